"""Pure decisions about commands: which cluster some words name, and who may do what.

Nothing here imports boto3 or errbot. The plugin asks, the view words the
answer: a name problem is an exception carrying the facts (not the wording),
a permission is either the hold to act on or a :class:`Denied` with a code.

Naming (DESIGN §3): a cluster is named by its Name or its id, case-insensitively;
names may contain spaces ("Log Analysis") and the longest run of leading words
that names a managed cluster wins, or the name may be quoted. A name shared by
several managed clusters is refused with their ids; words that name an
unmanaged cluster are refused like an unknown name, never read as a reason.

Starting (DESIGN §12): which template ``!emr start`` words name (the name may be
left out when there is one template), and whether a start is refused — a
managed cluster from that template (or with its cluster name) is already
active, or one more would exceed ``MAX_CLUSTERS``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from emrchatops.domain.state import UNMANAGED, ClusterInfo, ClusterRecord, Hold, State
from emrchatops.domain.templates import Template
from emrchatops.domain.vocabulary import CLUSTER_ID_TYPED_RE

QUOTES = {'"': '"', "'": "'", "“": "”", "‘": "’", "「": "」"}


class NameProblem(Exception):
    """The words do not name exactly one managed cluster."""


class NoneRunning(NameProblem):
    """No managed cluster is running."""


class SeveralRunning(NameProblem):
    def __init__(self, names: Sequence[str]) -> None:
        super().__init__(", ".join(names))
        self.names = tuple(names)


class UnknownName(NameProblem):
    """No managed cluster has this name or id (it may be an unmanaged one: said the same way)."""

    def __init__(self, word: str, managed: Sequence[str]) -> None:
        super().__init__(word)
        self.word = word
        self.managed = tuple(managed)


class AmbiguousName(NameProblem):
    def __init__(self, name: str, ids: Sequence[str]) -> None:
        super().__init__(name)
        self.name = name
        self.ids = tuple(ids)


def _norm(text: str) -> str:
    return " ".join(text.split()).casefold()


def _matches(clusters: Sequence[ClusterInfo], words: str) -> list[ClusterInfo]:
    wanted = _norm(words)
    return [c for c in clusters if wanted in (_norm(c.name), c.id.casefold())]


def _one(found: list[ClusterInfo], name: str) -> ClusterInfo:
    if len(found) > 1:
        raise AmbiguousName(name, [c.id for c in found])
    return found[0]


def name_cluster(
    text: str,
    managed: Sequence[ClusterInfo],
    others: Sequence[ClusterInfo] = (),
    *,
    rest_allowed: bool = False,
) -> tuple[ClusterInfo, str]:
    """``[CLUSTER] [REST…]`` → (the managed cluster, the rest).

    *managed* are the managed active clusters, *others* the active clusters
    that are not managed (their names are refused, never read as a reason).
    Without *rest_allowed* all the words must name the cluster.
    """
    text = text.strip()
    names = [c.name for c in managed]
    if not text:
        return _only(managed), ""
    if text[0] in QUOTES:
        close = text.find(QUOTES[text[0]], 1)
        if close > 1:
            name, rest = text[1:close], text[close + 1 :].strip()
            found = _matches(managed, name)
            if not found:
                raise UnknownName(name, names)
            if rest and not rest_allowed:
                raise UnknownName(text, names)
            return _one(found, name), rest
    words = text.split()
    lengths = range(len(words), 0, -1) if rest_allowed else (len(words),)
    for k in lengths:
        prefix = " ".join(words[:k])
        found = _matches(managed, prefix)
        if found:
            return _one(found, prefix), " ".join(words[k:])
    for k in lengths:
        prefix = " ".join(words[:k])
        if _matches(others, prefix):
            raise UnknownName(prefix, names)
    if not rest_allowed or CLUSTER_ID_TYPED_RE.fullmatch(words[0]):
        raise UnknownName(text if not rest_allowed else words[0], names)
    return _only(managed), text


def _only(managed: Sequence[ClusterInfo]) -> ClusterInfo:
    if not managed:
        raise NoneRunning()
    if len(managed) > 1:
        raise SeveralRunning([c.name for c in managed])
    return managed[0]


# -- who may do what -------------------------------------------------------------------


@dataclass(frozen=True)
class Denied:
    """A refusal, as a code the view words, with the holds it is about."""

    code: str  # held_by_others, force_needs_admin, not_holder, release_needs_admin, target_not_holder
    holds: tuple[Hold, ...] = ()
    target: str = ""


def may_terminate(record: ClusterRecord, user: str, *, force: bool, admin: bool) -> Denied | None:
    """Anyone may terminate a cluster nobody else holds; one held by others takes an admin's ``--force``."""
    others = tuple(h for h in record.holds if h.user != user)
    if others and not force:
        return Denied("held_by_others", others)
    if others and not admin:
        return Denied("force_needs_admin", others)
    return None


def hold_to_release(record: ClusterRecord, user: str, name: str, target: str | None, *, admin: bool) -> Hold | Denied:
    """The hold ``!emr unlock [--user TARGET]`` drops: one's own, or (admins only) someone else's."""
    if target is None or target in (user, name):
        own = record.holder(user)
        return own if own is not None else Denied("not_holder", record.holds)
    if not admin:
        return Denied("release_needs_admin", record.holds)
    hold = next((h for h in record.holds if target in (h.user, h.name)), None)
    return hold if hold is not None else Denied("target_not_holder", record.holds, target)


def may_ask_overtime(record: ClusterRecord, user: str) -> Denied | None:
    """Only a holder may keep a cluster past the end of day."""
    return None if record.holder(user) is not None else Denied("overtime_needs_hold", record.holds)


# -- starting a cluster ------------------------------------------------------------------


class TemplateProblem(Exception):
    """The words of `!emr start` do not name a template."""

    def __init__(self, word: str, names: Sequence[str]) -> None:
        super().__init__(word)
        self.word = word  # "" when no template was named
        self.names = tuple(names)


def choose_template(text: str, names: Sequence[str]) -> tuple[str, str]:
    """``[TEMPLATE] [REASON…]`` → (the template's name, the reason).

    The first word names a template (case-insensitively); with exactly one template it may
    be left out, and then all the words are the reason. With several, one must be named:
    :class:`TemplateProblem` carries the word (empty when none) and the names to offer.
    """
    words = text.split(maxsplit=1)
    if words:
        named = [n for n in names if n.casefold() == words[0].casefold()]
        if named:
            return named[0], words[1].strip() if len(words) > 1 else ""
    if len(names) == 1:
        return names[0], text.strip()
    raise TemplateProblem(words[0] if words else "", names)


@dataclass(frozen=True)
class ActiveCluster:
    """A managed cluster that counts against a start: listed active, or remembered and not yet ended."""

    id: str
    name: str
    state: str
    template: str = ""


@dataclass(frozen=True)
class StartRefused:
    """Why `!emr start` must not call RunJobFlow; the view words it."""

    code: Literal["already_active", "too_many"]
    clusters: tuple[ActiveCluster, ...]
    limit: int = 0


def active_clusters(state: State, listed: Sequence[ClusterInfo]) -> list[ActiveCluster]:
    """The managed clusters a start must count: the listing's, and those the state remembers.

    A cluster the bot has just started may be missing from a listing for a while (AWS lists
    new clusters with a delay), and one missing from a listing proves nothing until AWS says
    it ended (DESIGN §3): both still count.
    """
    found: dict[str, ActiveCluster] = {}
    for record in state.clusters.values():
        if record.ending is None and record.absent != UNMANAGED:
            found[record.id] = ActiveCluster(record.id, record.name, record.state, record.template)
    for info in listed:
        template = info.template or (found[info.id].template if info.id in found else "")
        found[info.id] = ActiveCluster(info.id, info.name, info.state, template)
    return sorted(found.values(), key=lambda c: (c.name.casefold(), c.id))


def may_start(template: Template, active: Sequence[ActiveCluster], max_clusters: int) -> StartRefused | None:
    """Whether `!emr start TEMPLATE` may call RunJobFlow now; a refusal changes nothing.

    Refused when a managed cluster from that template — or with its cluster name, which would
    make two clusters of one name — is active (use it: `!emr lock`), or when one more would make
    more than *max_clusters* managed clusters active.
    """
    wanted = template.cluster_name.casefold()
    same = tuple(c for c in active if c.template.casefold() == template.name.casefold() or c.name.casefold() == wanted)
    if same:
        return StartRefused("already_active", same)
    if len(active) + 1 > max_clusters:
        return StartRefused("too_many", tuple(active), max_clusters)
    return None
