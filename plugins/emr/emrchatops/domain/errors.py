"""Domain errors: what went wrong, said so that a user can act on it.

Each error's ``str()`` is the one-line reply the plugin sends to chat. The
adapter and the session turn botocore exceptions into these; nothing here
knows about botocore or errbot.
"""

from __future__ import annotations

from collections.abc import Mapping

SHOWN_TAGS = 6  # a denial names at most this many of the cluster's tags


def one_line(text: str) -> str:
    """Any text as one line (replies are one line: botocore messages are not)."""
    return " ".join(text.split())


class EmrChatopsError(Exception):
    """Base class: ``str(error)`` is a complete, one-line, user-facing answer.

    A refusal of the service carries its facts instead (:meth:`of`): ``problem`` is one of
    :data:`emrchatops.app.notices.Refusal`, worded by the chat (``View.error_text``), and
    ``str(error)`` only names it for the log.
    """

    problem: object = None

    @classmethod
    def of(cls, problem: object) -> EmrChatopsError:
        """An error of this class whose reply the chat words from *problem*."""
        error = cls(type(problem).__name__)
        error.problem = problem
        return error


class ConfigError(EmrChatopsError):
    """A bad value in the ``EMR`` config dict; names the key."""

    def __init__(self, key: str, problem: str) -> None:
        self.key = key
        super().__init__(f"EMR config {key}: {problem}")


class UsageError(EmrChatopsError):
    """A command was given arguments it cannot take."""


class UnknownClusterError(EmrChatopsError):
    """The named cluster is not a managed, active cluster."""


class NoClusterError(EmrChatopsError):
    """No managed cluster is running."""


class RefusedError(EmrChatopsError):
    """The command is understood but not allowed now (held by others, not a holder, …)."""


class AwsError(EmrChatopsError):
    """An AWS call failed; ``code`` identifies the failure for de-duplicated announcements."""

    code = "AwsError"


class AccessDeniedError(AwsError):
    """IAM refused an action; the message names the action to allow."""

    code = "AccessDenied"

    def __init__(self, action: str, where: str) -> None:
        self.action = action
        self.where = where
        if action == "sts:AssumeRole":
            fix = (
                "allow it in the bot's own policy (account A) and check the role's trust policy and "
                "ExternalId (account B; see deploy/iam/), then try again."
            )
        else:
            fix = f"allow {action} in the role's permission policy (see deploy/iam/), then try again."
        super().__init__(f"AWS denied {action} ({where}): {fix}")


class TagConditionDeniedError(AccessDeniedError):
    """IAM refused to change a cluster: the role may change only the clusters that carry the managed tag.

    The shipped policy allows each changing action (``emrchatops.aws.adapter.MUTATING``) only with the condition
    ``elasticmapreduce:ResourceTag/<key>`` = ``<value>``. AWS's answer does not say which condition
    failed, so the message says what the cluster carries against what the policy should require.
    """

    def __init__(
        self,
        denied: AccessDeniedError,
        verb: str,
        required: str,
        carries: bool,
        cluster: tuple[str, str],
        tags: Mapping[str, str],
    ) -> None:
        self.action, self.where, self.tags = denied.action, denied.where, dict(tags)
        name, cluster_id = (shown(part) for part in cluster)
        key, _, value = required.partition("=")
        if carries:
            # The cluster carries the tag the policy should name: the policy names another tag,
            # or lacks the action altogether. AWS's answer is the same for both.
            text = (
                f"AWS denied {self.action} on {name} ({cluster_id}), which is tagged {required} ({self.where}): "
                f"allow {self.action} on clusters tagged {required} in the role's permission policy "
                "(its tag condition must name EMR_CLUSTER_TAG; see deploy/iam/), then try again."
            )
        else:
            text = (
                f"AWS denied {self.action} on {name} ({cluster_id}) ({self.where}): {tag_condition(verb, required, tags)}. "
                f"Tag it (`aws emr add-tags --resource-id {cluster_id} --tags {key}={value or '…'}`) if the bot "
                "should manage it, or widen the role's tag condition (deploy/iam/; docs/operator-guide.md, IAM)."
            )
        EmrChatopsError.__init__(self, text)


def tag_condition(verb: str, required: str, tags: Mapping[str, str]) -> str:
    """E.g. "the role may only terminate clusters tagged emr-chatops=true: this cluster's tags are team=etl"."""
    return f"the role may only {verb} clusters tagged {required}: {describe_tags(tags)}"


def describe_tags(tags: Mapping[str, str]) -> str:
    """A cluster's tags for a one-line reply: sorted, at most :data:`SHOWN_TAGS`, made inert (see :func:`shown`)."""
    if not tags:
        return "this cluster has no tags"
    pairs = [shown(f"{key}={value}") for key, value in sorted(tags.items())]
    more = f" and {len(pairs) - SHOWN_TAGS} more" if len(pairs) > SHOWN_TAGS else ""
    return f"this cluster's tags are {', '.join(pairs[:SHOWN_TAGS])}{more}"


def shown(text: str, limit: int = 60) -> str:
    """Text from AWS (a tag, a name) safe in any chat: letters, digits and `` _.:/=+-@`` kept, the rest as ``?``.

    Tags are anyone's text in account B; in Slack, ``<!channel>`` in a tag would otherwise ping a channel.
    """
    safe = "".join(ch if ch.isalnum() or ch in " _.:/=+-@" else "?" for ch in one_line(text))
    return safe if len(safe) <= limit else safe[: limit - 1] + "…"


class TerminationProtectedError(AwsError):
    """The cluster has termination protection on; EMR refuses to terminate it."""

    code = "TerminationProtected"

    def __init__(self, name: str, cluster_id: str) -> None:
        super().__init__(
            f"{name} ({cluster_id}) has termination protection on: turn it off in the EMR console "
            "(or with `aws emr modify-cluster-attributes --no-termination-protected`), then try again."
        )


class AwsUnreachableError(AwsError):
    """The endpoint did not answer in time or refused the connection."""

    code = "Unreachable"


class CredentialsError(AwsError):
    """The bot's own identity or the AssumeRole into the cluster account failed."""

    code = "Credentials"
