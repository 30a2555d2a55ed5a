"""Domain errors: what went wrong, said so that a user can act on it.

Each error's ``str()`` is the one-line reply the plugin sends to chat. The
adapter and the session turn botocore exceptions into these; nothing here
knows about botocore or errbot.
"""

from __future__ import annotations


def one_line(text: str) -> str:
    """Any text as one line (replies are one line: botocore messages are not)."""
    return " ".join(text.split())


class EmrChatopsError(Exception):
    """Base class: ``str(error)`` is a complete, one-line, user-facing answer."""


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
        if action == "sts:AssumeRole":
            fix = (
                "allow it in the bot's own policy (account A) and check the role's trust policy and "
                "ExternalId (account B; see deploy/iam/), then try again."
            )
        else:
            fix = f"allow {action} in the role's permission policy (see deploy/iam/), then try again."
        super().__init__(f"AWS denied {action} ({where}): {fix}")


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
