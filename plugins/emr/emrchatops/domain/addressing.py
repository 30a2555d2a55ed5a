"""Which cluster, target or template some words name when the bot serves several targets (DESIGN §17).

A managed cluster is named by its name when exactly one managed cluster anywhere has it, by
``TARGET/NAME`` (``game-a/analytics``), by ``TARGET/REGION/NAME`` when its target has that name in
two regions (words after ``TARGET/`` that begin with a region and ``/`` are always read so), or by its id; case-insensitively, names with spaces as
:func:`~emrchatops.domain.decisions.name_cluster` reads them for one target (the longest run of
leading words that names a cluster wins, or the name is quoted). Words whose first part, before a
``/``, names a configured target are read as a qualified name only, never as a bare name: so a
qualified name never resolves to another target's cluster, even one named ``game-b/analytics``.

An ambiguous name is refused with every qualified name (:class:`AmbiguousAddress`, the shortest
qualification that names each cluster alone, :func:`qualified_names`); an unknown one offers them
all. The refusals are :mod:`~emrchatops.domain.decisions`' (``NameProblem`` and its kinds, and
``TemplateProblem``), so what catches those catches these.

Also: a bare ``TARGET`` (``!emr status [TARGET|CLUSTER]``, ``!emr report [DAYS] [TARGET]``,
``!emr doctor [TARGET]``) and ``[TARGET/]TEMPLATE`` for ``!emr start`` (the target whose templates
have it; ambiguous is refused).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from emrchatops.domain.decisions import (
    QUOTES,
    AmbiguousName,
    NameProblem,
    NoneRunning,
    SeveralRunning,
    TemplateProblem,
    UnknownName,
    _norm,
)
from emrchatops.domain.state import ClusterInfo
from emrchatops.domain.vocabulary import CLUSTER_ID_TYPED_RE as CLUSTER_ID_RE
from emrchatops.domain.vocabulary import REGION_RE


@dataclass(frozen=True)
class Located:
    """A cluster and where it is: its target and region."""

    target: str
    region: str
    cluster: ClusterInfo

    @property
    def id(self) -> str:
        return self.cluster.id

    @property
    def name(self) -> str:
        return self.cluster.name


class AmbiguousAddress(AmbiguousName):
    """Several managed clusters answer to the words; *qualified* names each of them alone."""

    def __init__(self, name: str, ids: Sequence[str], qualified: Sequence[str]) -> None:
        super().__init__(name, ids)
        self.qualified = tuple(qualified)


class UnknownTarget(NameProblem):
    """No configured target has this name."""

    def __init__(self, word: str, targets: Sequence[str]) -> None:
        super().__init__(word)
        self.word = word
        self.targets = tuple(targets)


class AmbiguousTemplate(TemplateProblem):
    """Several targets have a template of this name; *names* are the qualified ones (``game-a/analytics``)."""


# -- clusters --------------------------------------------------------------------------------------


def _known(targets: Collection[str], *clusters: Sequence[Located]) -> frozenset[str]:
    return frozenset(t.casefold() for t in targets) | {c.target.casefold() for group in clusters for c in group}


def _find(clusters: Sequence[Located], words: str, known: frozenset[str]) -> list[Located]:
    """The clusters *words* spell: qualified when the part before the first ``/`` is a target, else bare."""
    wanted = _norm(words)
    head, slash, tail = wanted.partition("/")
    if slash and head in known:
        region, slash, name = tail.partition("/")
        if not (slash and REGION_RE.match(region)):  # TARGET/NAME
            region, name = "", tail
        return [
            c
            for c in clusters
            if c.target.casefold() == head and region in ("", c.region.casefold()) and name == _norm(c.name)
        ]
    return [c for c in clusters if wanted in (_norm(c.name), c.id.casefold())]


def qualified_names(managed: Sequence[Located], targets: Collection[str] = ()) -> dict[str, str]:
    """Cluster id → the shortest words that name that cluster alone: NAME, TARGET/NAME,
    TARGET/REGION/NAME, or else (two of one name in one target and region) the id."""
    known = _known(targets, managed)
    names: dict[str, str] = {}
    for c in managed:
        spellings = (c.name, f"{c.target}/{c.name}", f"{c.target}/{c.region}/{c.name}")
        names[c.id] = next((s for s in spellings if _find(managed, s, known) == [c]), c.id)
    return names


def _offered(managed: Sequence[Located], known: Collection[str]) -> list[str]:
    return sorted(qualified_names(managed, known).values(), key=lambda n: (n.casefold(), n))


def _one(found: list[Located], words: str, managed: Sequence[Located], known: frozenset[str]) -> Located:
    if len(found) > 1:
        names = qualified_names(managed, known)
        qualified = sorted((names[c.id] for c in found), key=lambda n: (n.casefold(), n))
        raise AmbiguousAddress(words, [c.id for c in found], qualified)
    return found[0]


def _only(managed: Sequence[Located], known: frozenset[str]) -> Located:
    if not managed:
        raise NoneRunning()
    if len(managed) > 1:
        raise SeveralRunning(_offered(managed, known))
    return managed[0]


def _qualified(word: str, known: frozenset[str]) -> bool:
    head, slash, _ = word.casefold().partition("/")
    return bool(slash) and head in known


def address_cluster(
    text: str,
    managed: Sequence[Located],
    others: Sequence[Located] = (),
    *,
    targets: Collection[str] = (),
    rest_allowed: bool = False,
) -> tuple[Located, str]:
    """``[CLUSTER] [REST…]`` → (the managed cluster, the rest), across every target.

    *managed* are the managed active clusters of every target, *others* the active clusters that
    are not managed (their names are refused, never read as a reason), *targets* every configured
    target's name (a target with no cluster is still one: ``game-c/x`` is never a bare name).
    Without *rest_allowed* all the words must name the cluster. Raises the refusals of
    :func:`~emrchatops.domain.decisions.name_cluster`, an ambiguity as :class:`AmbiguousAddress`.
    """
    known = _known(targets, managed, others)
    text = text.strip()
    if not text:
        return _only(managed, known), ""
    offered = _offered(managed, known)
    if text[0] in QUOTES:
        close = text.find(QUOTES[text[0]], 1)
        if close > 1:
            name, rest = text[1:close], text[close + 1 :].strip()
            found = _find(managed, name, known)
            if not found or (rest and not rest_allowed):
                raise UnknownName(name if not found else text, offered)
            return _one(found, name, managed, known), rest
    words = text.split()
    lengths = range(len(words), 0, -1) if rest_allowed else (len(words),)
    for k in lengths:
        prefix = " ".join(words[:k])
        found = _find(managed, prefix, known)
        if found:
            return _one(found, prefix, managed, known), " ".join(words[k:])
    for k in lengths:
        prefix = " ".join(words[:k])
        if _find(others, prefix, known):
            raise UnknownName(prefix, offered)
    if not rest_allowed or CLUSTER_ID_RE.fullmatch(words[0]) or _qualified(words[0], known):
        raise UnknownName(text if not rest_allowed else words[0], offered)
    return _only(managed, known), text


# -- targets ---------------------------------------------------------------------------------------


def choose_target(text: str, targets: Sequence[str]) -> str | None:
    """``[TARGET]`` → the target's name as configured, or None for no words (``!emr doctor [TARGET]``)."""
    word = text.strip()
    if not word:
        return None
    named = [t for t in targets if t.casefold() == word.casefold()]
    if not named:
        raise UnknownTarget(word, targets)
    return named[0]


def status_subject(
    text: str, managed: Sequence[Located], others: Sequence[Located] = (), *, targets: Sequence[str]
) -> str | Located | None:
    """``!emr status [TARGET|CLUSTER]`` → a target's name, a cluster, or None (everything).

    A word that names a target is the target, even if a cluster has that name too: the target's
    status shows that cluster as well.
    """
    word = text.strip()
    if not word:
        return None
    named = [t for t in targets if t.casefold() == word.casefold()]
    if named:
        return named[0]
    found, _ = address_cluster(word, managed, others, targets=targets)
    return found


def report_words(text: str, targets: Sequence[str]) -> tuple[str, str | None]:
    """``!emr report [DAYS] [TARGET]`` → (the DAYS words, for the caller to read, and the target or None).

    A last word that is not digits must name a target (:class:`UnknownTarget` otherwise).
    """
    words = text.split()
    if not words or words[-1].isdigit():
        return " ".join(words), None
    return " ".join(words[:-1]), choose_target(words[-1], targets)


# -- templates -------------------------------------------------------------------------------------


def _template_spelling(target: str, name: str, templates: Mapping[str, Sequence[str]]) -> str:
    owners = [t for t, names in templates.items() if any(n.casefold() == name.casefold() for n in names)]
    return name if owners == [target] else f"{target}/{name}"


def template_names(templates: Mapping[str, Sequence[str]]) -> tuple[str, ...]:
    """Every template as ``!emr start`` takes it: its name, or ``TARGET/NAME`` when several targets have it."""
    found = {_template_spelling(t, n, templates) for t, names in templates.items() for n in names}
    return tuple(sorted(found, key=lambda n: (n.casefold(), n)))


def choose_start(text: str, templates: Mapping[str, Sequence[str]]) -> tuple[str, str, str]:
    """``[TARGET/]TEMPLATE [REASON…]`` → (the target, the template's name, the reason).

    *templates* are each target's template names. A bare TEMPLATE names the target whose templates
    have it (several: :class:`AmbiguousTemplate`); with exactly one template anywhere it may be left
    out, and then all the words are the reason. ``TARGET/…`` with an unknown target is
    :class:`UnknownTarget` (never read as a reason: a start costs money); an unknown or missing
    template is :class:`~emrchatops.domain.decisions.TemplateProblem` offering what may be started.
    """
    words = text.split(maxsplit=1)
    first = words[0] if words else ""
    rest = words[1].strip() if len(words) > 1 else ""
    head, slash, name = first.partition("/")
    if slash and head:
        target = choose_target(head, list(templates))
        assert target is not None  # head is a word
        own = templates[target]
        named = [n for n in own if n.casefold() == name.casefold()]
        if not named:
            raise TemplateProblem(first, [f"{target}/{n}" for n in sorted(own, key=str.casefold)])
        return target, named[0], rest
    matches = [(t, n) for t, names in templates.items() for n in names if first and n.casefold() == first.casefold()]
    if len(matches) > 1:
        raise AmbiguousTemplate(first, sorted((f"{t}/{n}" for t, n in matches), key=str.casefold))
    if matches:
        return matches[0][0], matches[0][1], rest
    every = [(t, n) for t, names in templates.items() for n in names]
    if len(every) == 1:
        return every[0][0], every[0][1], text.strip()
    raise TemplateProblem(first, template_names(templates))
