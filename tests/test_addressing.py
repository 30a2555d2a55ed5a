"""Addressing (DESIGN §17): which cluster, target or template some words name across targets.

NAME when exactly one managed cluster anywhere has it, TARGET/NAME, TARGET/REGION/NAME, or the id;
an ambiguous name refused with every qualified name. A property: a qualified name never resolves to
another target's cluster (or region's, for TARGET/REGION/NAME)."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from emrchatops.domain.addressing import (
    AmbiguousAddress,
    AmbiguousTemplate,
    Located,
    UnknownTarget,
    address_cluster,
    choose_start,
    choose_target,
    qualified_names,
    report_words,
    status_subject,
    template_names,
)
from emrchatops.domain.decisions import (
    AmbiguousName,
    NameProblem,
    NoneRunning,
    SeveralRunning,
    TemplateProblem,
    UnknownName,
)
from emrchatops.domain.state import ClusterInfo

TOKYO, OREGON = "ap-northeast-1", "us-west-2"
TARGETS = ("game-a", "game-b", "game-c")  # game-c has no cluster running


def at(target: str, region: str, cid: str, name: str) -> Located:
    return Located(target, region, ClusterInfo(cid, name, "WAITING"))


A1 = at("game-a", TOKYO, "j-AAAAAAAA0001", "analytics")
A2 = at("game-a", TOKYO, "j-AAAAAAAA0002", "Log Analysis")
B1 = at("game-b", TOKYO, "j-BBBBBBBB0001", "analytics")
B2 = at("game-b", OREGON, "j-BBBBBBBB0002", "analytics")
B3 = at("game-b", OREGON, "j-BBBBBBBB0003", "etl")
MANAGED = (A1, A2, B1, B2, B3)
OTHERS = (at("game-a", TOKYO, "j-UUUUUUUU0001", "etl-nightly"),)
EVERY_ANALYTICS = ("game-a/analytics", "game-b/ap-northeast-1/analytics", "game-b/us-west-2/analytics")


def address(text: str, *, rest_allowed: bool = False, managed: Sequence[Located] = MANAGED) -> tuple[str, str]:
    found, rest = address_cluster(text, managed, OTHERS, targets=TARGETS, rest_allowed=rest_allowed)
    return found.cluster.id, rest


@pytest.mark.parametrize(
    ("text", "rest_allowed", "expected"),
    [
        ("game-a/analytics", False, (A1.id, "")),
        ("GAME-A/Analytics", False, (A1.id, "")),
        ("game-b/us-west-2/analytics", False, (B2.id, "")),
        ("game-b/ap-northeast-1/ANALYTICS", False, (B1.id, "")),
        ("etl", False, (B3.id, "")),  # one cluster anywhere has it: no qualification needed
        ("log   analysis", False, (A2.id, "")),
        ("game-a/Log Analysis", False, (A2.id, "")),
        ("game-a/log analysis until five", True, (A2.id, "until five")),
        ("game-b/us-west-2/analytics the demo", True, (B2.id, "the demo")),
        ('"game-b/us-west-2/analytics" the demo', True, (B2.id, "the demo")),
        ("j-bbbbbbbb0001", False, (B1.id, "")),
        ("j-BBBBBBBB0001 because", True, (B1.id, "because")),
        ("etl because", True, (B3.id, "because")),
    ],
)
def test_a_cluster_is_named_by_its_name_its_qualified_name_or_its_id(
    text: str, rest_allowed: bool, expected: tuple[str, str]
) -> None:
    assert address(text, rest_allowed=rest_allowed) == expected


@pytest.mark.parametrize(
    ("text", "qualified"),
    [
        ("analytics", EVERY_ANALYTICS),
        ("Analytics", EVERY_ANALYTICS),
        ("game-b/analytics", EVERY_ANALYTICS[1:]),
    ],
)
def test_an_ambiguous_name_is_refused_with_every_qualified_name(text: str, qualified: tuple[str, ...]) -> None:
    for rest_allowed, words in ((False, text), (True, f"{text} for the demo")):
        with pytest.raises(AmbiguousAddress) as caught:
            address(words, rest_allowed=rest_allowed)
        assert caught.value.qualified == qualified
        assert isinstance(caught.value, AmbiguousName) and caught.value.name == text  # what the service catches
        assert len(caught.value.ids) == len(qualified)


@pytest.mark.parametrize(
    ("text", "rest_allowed"),
    [
        ("game-c/analytics", False),  # a target with no such cluster
        ("game-a/etl", False),  # game-b's
        ("game-a/us-west-2/analytics", False),  # game-a has none there
        ("etl-nightly", False),  # not managed: refused like an unknown name, never a reason
        ("etl-nightly please", True),
        ("game-c/analytics please", True),  # a qualified name is never read as a reason
        ("nothing", False),
        ("j-ZZZZZZZZ0001 please", True),
    ],
)
def test_an_unknown_name_is_refused_offering_the_qualified_names(text: str, rest_allowed: bool) -> None:
    with pytest.raises(UnknownName) as caught:
        address(text, rest_allowed=rest_allowed)
    assert caught.value.managed == ("etl", *EVERY_ANALYTICS, "Log Analysis")  # as listed: by name


def test_no_words_name_the_only_cluster_or_are_refused() -> None:
    assert address("", managed=[B2]) == (B2.id, "")
    assert address("keep it up please", rest_allowed=True, managed=[B2]) == (B2.id, "keep it up please")
    with pytest.raises(NoneRunning):
        address("", managed=[])
    with pytest.raises(SeveralRunning) as caught:
        address("", managed=[A1, B1, B2])
    assert caught.value.names == EVERY_ANALYTICS


def test_the_shortest_qualification_that_names_one_cluster_is_offered() -> None:
    assert qualified_names(MANAGED, TARGETS) == {
        A1.id: "game-a/analytics",
        A2.id: "Log Analysis",
        B1.id: "game-b/ap-northeast-1/analytics",
        B2.id: "game-b/us-west-2/analytics",
        B3.id: "etl",
    }
    # Two clusters of one name in one target and region: only the id tells them apart.
    twin = at("game-a", TOKYO, "j-AAAAAAAA0009", "analytics")
    assert qualified_names([A1, twin], TARGETS) == {A1.id: A1.id, twin.id: twin.id}
    # A name that reads as a qualified name is qualified itself, and never taken for game-b's cluster.
    slashed = at("game-a", TOKYO, "j-AAAAAAAA0010", "game-b/analytics")
    assert qualified_names([slashed, B1], TARGETS)[slashed.id] == "game-a/game-b/analytics"
    assert address("game-b/analytics", managed=[slashed, B1]) == (B1.id, "")
    with pytest.raises(UnknownName):
        address("game-b/analytics", managed=[slashed])  # game-b has none: not game-a's "game-b/analytics"
    assert address("game-a/game-b/analytics", managed=[slashed]) == (slashed.id, "")
    assert address("x/y", managed=[at("game-a", TOKYO, "j-AAAAAAAA0011", "x/y")])[0] == "j-AAAAAAAA0011"
    # A name that begins with a region: TARGET/REGION/… is read as the region it says, never another.
    regional = at("game-a", TOKYO, "j-AAAAAAAA0013", "us-west-2/etl")
    assert qualified_names([regional], TARGETS)[regional.id] == "us-west-2/etl"
    assert (
        qualified_names([regional, at("game-b", TOKYO, "j-BBBBBBBB0013", "us-west-2/etl")], TARGETS)[regional.id]
        == "game-a/ap-northeast-1/us-west-2/etl"
    )
    with pytest.raises(UnknownName):
        address("game-a/us-west-2/etl", managed=[regional])


# -- the property ---------------------------------------------------------------------------------------

NAMES = ("analytics", "etl", "Log Analysis", "game-a/analytics", "game-b/us-west-2/etl", "us-west-2/etl")
REGIONS = (TOKYO, OREGON, "eu-west-1")


@st.composite
def fleets(draw: st.DrawFn) -> list[Located]:
    picks = draw(
        st.lists(st.tuples(st.sampled_from(TARGETS), st.sampled_from(REGIONS), st.sampled_from(NAMES)), max_size=12)
    )
    return [at(t, r, f"j-{i:012d}", n) for i, (t, r, n) in enumerate(picks)]


@settings(max_examples=400, deadline=None)
@given(
    fleets(),
    st.sampled_from(TARGETS),
    st.one_of(st.none(), st.sampled_from(REGIONS)),
    st.sampled_from(NAMES),
    st.sampled_from(["", " please", " game-b/analytics"]),
    st.booleans(),
)
def test_a_qualified_name_never_resolves_to_another_target_s_cluster(
    managed: list[Located], target: str, region: str | None, name: str, tail: str, upper: bool
) -> None:
    words = f"{target}/{region}/{name}" if region else f"{target}/{name}"
    words = words.upper() if upper else words
    try:
        found, _ = address_cluster(words + tail, managed, targets=TARGETS, rest_allowed=bool(tail))
    except NameProblem:
        return
    assert found.target == target
    assert region is None or found.region == region
    # and the words spell it: TARGET/NAME, or TARGET/REGION/NAME (a name may hold a slash)
    spelled = {f"{found.target}/{found.name}", f"{found.target}/{found.region}/{found.name}"}
    assert words.casefold() in {s.casefold() for s in spelled}


@settings(max_examples=300, deadline=None)
@given(fleets())
def test_every_offered_name_names_its_own_cluster(managed: list[Located]) -> None:
    for cid, spelled in qualified_names(managed, TARGETS).items():
        assert address_cluster(spelled, managed, targets=TARGETS)[0].cluster.id == cid


# -- targets: !emr status [TARGET|CLUSTER], !emr report [DAYS] [TARGET], !emr doctor [TARGET] -----------------


def test_a_target_is_named_case_insensitively() -> None:
    assert choose_target("game-b", TARGETS) == "game-b"
    assert choose_target(" GAME-B ", TARGETS) == "game-b"
    assert choose_target("", TARGETS) is None
    for word in ("game-x", "game-a game-b", "game-a/analytics"):
        with pytest.raises(UnknownTarget) as caught:
            choose_target(word, TARGETS)
        assert (caught.value.word, caught.value.targets) == (word, TARGETS)


def test_status_names_a_target_or_a_cluster() -> None:
    assert status_subject("", MANAGED, OTHERS, targets=TARGETS) is None
    assert status_subject("Game-B", MANAGED, OTHERS, targets=TARGETS) == "game-b"
    assert status_subject("game-c", MANAGED, OTHERS, targets=TARGETS) == "game-c"  # a target with no cluster
    assert status_subject("game-b/us-west-2/analytics", MANAGED, OTHERS, targets=TARGETS) == B2
    assert status_subject("log analysis", MANAGED, OTHERS, targets=TARGETS) == A2
    # A word that names a target and a cluster is the target: its status shows that cluster too.
    named_like_a_target = at("game-a", TOKYO, "j-AAAAAAAA0012", "game-b")
    assert status_subject("game-b", [named_like_a_target], targets=TARGETS) == "game-b"
    with pytest.raises(AmbiguousAddress):
        status_subject("analytics", MANAGED, OTHERS, targets=TARGETS)
    with pytest.raises(UnknownName):
        status_subject("etl-nightly", MANAGED, OTHERS, targets=TARGETS)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", ("", None)),
        ("7", ("7", None)),
        ("game-a", ("", "game-a")),
        ("7 GAME-B", ("7", "game-b")),
        ("7 8", ("7 8", None)),  # the caller says how DAYS is written
        ("game-a 7", ("game-a 7", None)),
    ],
)
def test_report_takes_days_then_a_target(text: str, expected: tuple[str, str | None]) -> None:
    assert report_words(text, TARGETS) == expected


def test_report_refuses_an_unknown_target() -> None:
    with pytest.raises(UnknownTarget) as caught:
        report_words("7 game-x", TARGETS)
    assert caught.value.word == "game-x"


# -- !emr start [TARGET/]TEMPLATE [REASON] ------------------------------------------------------------------

TEMPLATES = {"game-a": ("adhoc", "analytics"), "game-b": ("analytics",), "game-c": ()}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("game-b/analytics for the demo", ("game-b", "analytics", "for the demo")),
        ("GAME-A/Analytics", ("game-a", "analytics", "")),
        ("adhoc a quick look", ("game-a", "adhoc", "a quick look")),
        ("ADHOC", ("game-a", "adhoc", "")),
    ],
)
def test_start_names_the_target_whose_templates_have_it(text: str, expected: tuple[str, str, str]) -> None:
    assert choose_start(text, TEMPLATES) == expected


def test_one_template_anywhere_may_be_left_out() -> None:
    only = {"game-a": (), "game-b": ("analytics",)}
    assert choose_start("", only) == ("game-b", "analytics", "")
    assert choose_start("for the demo", only) == ("game-b", "analytics", "for the demo")


def test_start_refuses_an_ambiguous_or_unknown_template() -> None:
    with pytest.raises(AmbiguousTemplate) as ambiguous:
        choose_start("analytics for the demo", TEMPLATES)
    assert (ambiguous.value.word, ambiguous.value.names) == ("analytics", ("game-a/analytics", "game-b/analytics"))
    assert isinstance(ambiguous.value, TemplateProblem)
    offered = ("adhoc", "game-a/analytics", "game-b/analytics")
    assert template_names(TEMPLATES) == offered
    for text, word, names in [
        ("", "", offered),
        ("nothing here", "nothing", offered),
        ("game-b/adhoc", "game-b/adhoc", ("game-b/analytics",)),  # that target's templates
        ("game-c/adhoc", "game-c/adhoc", ()),
    ]:
        with pytest.raises(TemplateProblem) as caught:
            choose_start(text, TEMPLATES)
        assert not isinstance(caught.value, AmbiguousTemplate)
        assert (caught.value.word, caught.value.names) == (word, names), text
    with pytest.raises(UnknownTarget) as unknown:
        choose_start("game-x/analytics", TEMPLATES)  # never read as the reason of the only template
    assert unknown.value.word == "game-x"
    with pytest.raises(UnknownTarget):
        choose_start("game-x/analytics", {"game-a": ("analytics",)})
