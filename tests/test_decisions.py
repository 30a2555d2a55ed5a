"""Pure decisions, without moto or Errbot: which cluster words name, and who may do what."""

from __future__ import annotations

import ast
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from emr_decisions import (
    ActiveCluster,
    AmbiguousName,
    Denied,
    NameProblem,
    NoneRunning,
    SeveralRunning,
    TemplateProblem,
    UnknownName,
    active_clusters,
    choose_template,
    hold_to_release,
    may_ask_overtime,
    may_start,
    may_terminate,
    name_cluster,
)
from emr_state import UNMANAGED, UNSEEN, ClusterInfo, ClusterRecord, Ending, Hold, State
from emr_templates import parse_template

T0 = datetime(2026, 12, 1, 1, 0, tzinfo=UTC)
ANALYTICS = ClusterInfo("j-AAAAAAAAAAAA1", "analytics", "WAITING")
LOG = ClusterInfo("j-LLLLLLLLLLLL1", "Log Analysis", "WAITING")
LOG_DEV = ClusterInfo("j-LLLLLLLLLLLL2", "Log Analysis dev", "WAITING")
TWIN_A = ClusterInfo("j-TTTTTTTTTTTT1", "twin", "WAITING")
TWIN_B = ClusterInfo("j-TTTTTTTTTTTT2", "twin", "RUNNING")
ETL = ClusterInfo("j-EEEEEEEEEEEE1", "etl-nightly", "WAITING", managed=False)
SPACED = ClusterInfo("j-SSSSSSSSSSSS1", "Nightly  Report", "WAITING", managed=False)


@pytest.mark.parametrize(
    ("words", "managed", "cluster", "rest"),
    [
        ("", [ANALYTICS], ANALYTICS, ""),
        ("analytics", [ANALYTICS, LOG], ANALYTICS, ""),
        ("ANALYTICS spark job", [ANALYTICS, LOG], ANALYTICS, "spark job"),
        ("j-aaaaaaaaaaaa1 why", [ANALYTICS, LOG], ANALYTICS, "why"),
        ("Log Analysis report for Q3", [ANALYTICS, LOG], LOG, "report for Q3"),
        ("log   analysis", [ANALYTICS, LOG], LOG, ""),
        ("Log Analysis dev tests", [LOG, LOG_DEV], LOG_DEV, "tests"),  # the longest name wins
        ("Log Analysis devops", [LOG, LOG_DEV], LOG, "devops"),
        ('"Log Analysis" report', [ANALYTICS, LOG], LOG, "report"),
        ("“log analysis” report", [ANALYTICS, LOG], LOG, "report"),
        ("spark job on logs", [ANALYTICS], ANALYTICS, "spark job on logs"),  # one cluster: all words are the reason
        ("don't stop me", [ANALYTICS], ANALYTICS, "don't stop me"),
    ],
)
def test_words_name_a_cluster_and_the_rest_is_the_reason(
    words: str, managed: list[ClusterInfo], cluster: ClusterInfo, rest: str
) -> None:
    assert name_cluster(words, managed, [ETL], rest_allowed=True) == (cluster, rest)


@pytest.mark.parametrize(
    ("words", "managed", "problem", "detail"),
    [
        ("", [], NoneRunning, None),
        ("", [ANALYTICS, LOG], SeveralRunning, ("analytics", "Log Analysis")),
        ("reason only", [ANALYTICS, LOG], SeveralRunning, ("analytics", "Log Analysis")),
        ("etl-nightly", [ANALYTICS], UnknownName, "etl-nightly"),  # never read as a reason
        ("etl-nightly please", [ANALYTICS], UnknownName, "etl-nightly"),
        ("nightly report again", [ANALYTICS], UnknownName, "nightly report"),
        ("j-EEEEEEEEEEEE1", [ANALYTICS], UnknownName, "j-EEEEEEEEEEEE1"),
        ("j-NOSUCHCLUSTER0", [ANALYTICS], UnknownName, "j-NOSUCHCLUSTER0"),
        ("twin", [TWIN_A, TWIN_B], AmbiguousName, ("j-TTTTTTTTTTTT1", "j-TTTTTTTTTTTT2")),
        ("twin for the report", [TWIN_A, TWIN_B, ANALYTICS], AmbiguousName, ("j-TTTTTTTTTTTT1", "j-TTTTTTTTTTTT2")),
        ('"nosuch" reason', [ANALYTICS], UnknownName, "nosuch"),
    ],
)
def test_words_that_do_not_name_exactly_one_managed_cluster_are_refused(
    words: str, managed: list[ClusterInfo], problem: type[NameProblem], detail: object
) -> None:
    with pytest.raises(problem) as caught:
        name_cluster(words, managed, [ETL, SPACED], rest_allowed=True)
    if isinstance(caught.value, UnknownName):
        assert caught.value.word == detail
    elif isinstance(caught.value, AmbiguousName):
        assert caught.value.ids == detail
    elif isinstance(caught.value, SeveralRunning):
        assert caught.value.names == detail


@pytest.mark.parametrize(
    ("words", "expected"),
    [
        ("Log Analysis", LOG),
        ("log analysis", LOG),
        ("j-LLLLLLLLLLLL2", LOG_DEV),
        ("'Log Analysis dev'", LOG_DEV),
    ],
)
def test_commands_without_a_reason_take_all_the_words_as_the_name(words: str, expected: ClusterInfo) -> None:
    assert name_cluster(words, [ANALYTICS, LOG, LOG_DEV]) == (expected, "")


@pytest.mark.parametrize("words", ["analytics extra", "Log Analysis report", '"Log Analysis" x'])
def test_commands_without_a_reason_refuse_extra_words(words: str) -> None:
    with pytest.raises(UnknownName):
        name_cluster(words, [ANALYTICS, LOG])


names = st.sampled_from(["analytics", "Log Analysis", "log", "twin", "etl-nightly", "a b c", "x"])
clusters = st.lists(
    st.builds(
        lambda i, name, managed: ClusterInfo(f"j-{i:013d}", name, "WAITING", managed=managed),
        st.integers(0, 10**6),
        names,
        st.booleans(),
    ),
    max_size=5,
    unique_by=lambda c: c.id,
)
word_lists = st.lists(st.one_of(names, st.text(max_size=12), st.sampled_from(['"', "“", "j-", "--force"])), max_size=6)


@settings(max_examples=400, deadline=None, database=None)
@given(all_clusters=clusters, words=word_lists, rest_allowed=st.booleans())
def test_naming_answers_one_managed_cluster_or_a_name_problem_and_never_takes_an_unmanaged_name_as_a_reason(
    all_clusters: list[ClusterInfo], words: list[str], rest_allowed: bool
) -> None:
    managed = [c for c in all_clusters if c.managed]
    others = [c for c in all_clusters if not c.managed]
    text = " ".join(words)
    try:
        cluster, rest = name_cluster(text, managed, others, rest_allowed=rest_allowed)
    except NameProblem:
        return
    assert cluster in managed
    if not rest_allowed:
        assert rest == ""
    flat = " ".join(text.split())
    if text.strip() and rest == flat:
        # no name was consumed: the words were all taken as the reason, so they must not start with any
        # cluster's name or id, managed or not (an unmanaged name is refused, never read as a reason)
        assert len(managed) == 1
        for any_cluster in all_clusters:
            name = " ".join(any_cluster.name.split()).casefold()
            first = flat.casefold()
            assert not (first == name or first.startswith(name + " ")), any_cluster
            assert not first.startswith(any_cluster.id.casefold())


# -- who may do what ---------------------------------------------------------------------------

ALICE = Hold("U1", "alice", T0)
BOB = Hold("U2", "bob", T0)


def record(*holds: Hold) -> ClusterRecord:
    return ClusterRecord("j-AAAAAAAAAAAA1", "analytics", "WAITING", T0, holds=holds)


@pytest.mark.parametrize(
    ("holds", "user", "force", "admin", "code"),
    [
        ((), "U1", False, False, None),
        ((ALICE,), "U1", False, False, None),  # a holder alone may terminate
        ((ALICE,), "U2", False, False, "held_by_others"),
        ((ALICE,), "U2", False, True, "held_by_others"),  # admins too must say --force
        ((ALICE,), "U2", True, False, "force_needs_admin"),
        ((ALICE,), "U2", True, True, None),
        ((ALICE, BOB), "U1", False, False, "held_by_others"),
    ],
)
def test_who_may_terminate_a_cluster(
    holds: tuple[Hold, ...], user: str, force: bool, admin: bool, code: str | None
) -> None:
    denied = may_terminate(record(*holds), user, force=force, admin=admin)
    assert (denied.code if denied else None) == code
    if denied is not None:
        assert all(h.user != user for h in denied.holds)


@pytest.mark.parametrize(
    ("holds", "user", "name", "target", "admin", "outcome"),
    [
        ((ALICE,), "U1", "alice", None, False, ALICE),
        ((ALICE,), "U2", "bob", None, False, "not_holder"),
        ((ALICE,), "U1", "alice", "alice", False, ALICE),  # naming oneself is one's own hold
        ((ALICE,), "U2", "bob", "alice", False, "release_needs_admin"),
        ((ALICE,), "U9", "admin", "alice", True, ALICE),
        ((ALICE,), "U9", "admin", "U1", True, ALICE),
        ((ALICE,), "U9", "admin", "carol", True, "target_not_holder"),
    ],
)
def test_whose_hold_unlock_releases(
    holds: tuple[Hold, ...], user: str, name: str, target: str | None, admin: bool, outcome: object
) -> None:
    result = hold_to_release(record(*holds), user, name, target, admin=admin)
    assert (result.code if isinstance(result, Denied) else result) == outcome


def test_only_holders_may_ask_for_overtime() -> None:
    assert may_ask_overtime(record(ALICE), "U1") is None
    denied = may_ask_overtime(record(ALICE), "U2")
    assert denied is not None and denied.code == "overtime_needs_hold"


# -- starting: which template, and whether a start is refused ---------------------------------


@pytest.mark.parametrize(
    ("words", "names", "outcome"),
    [
        ("", ["analytics"], ("analytics", "")),
        ("analytics", ["analytics"], ("analytics", "")),
        ("ANALYTICS backfill for Q3", ["analytics", "adhoc"], ("analytics", "backfill for Q3")),
        ("backfill for Q3", ["analytics"], ("analytics", "backfill for Q3")),  # one template: all words are the reason
        ("adhoc  big   join", ["analytics", "adhoc"], ("adhoc", "big   join")),
        ("", ["analytics", "adhoc"], ("", ("analytics", "adhoc"))),  # several: one must be named
        ("backfill", ["analytics", "adhoc"], ("backfill", ("analytics", "adhoc"))),
        ("analytic", ["analytics", "adhoc"], ("analytic", ("analytics", "adhoc"))),  # no prefix matching
    ],
)
def test_which_template_the_words_of_start_name(words: str, names: list[str], outcome: tuple) -> None:
    try:
        result: tuple = choose_template(words, names)
    except TemplateProblem as problem:
        result = (problem.word, problem.names)
    assert result == outcome


ANALYTICS_TEMPLATE = parse_template(
    "analytics",
    '{"Name": "analytics", "ReleaseLabel": "emr-7.5.0", "Instances": {}, "JobFlowRole": "r", "ServiceRole": "s"}',
)


def active(*clusters: tuple[str, str, str, str]) -> list[ActiveCluster]:
    return [ActiveCluster(*c) for c in clusters]


@pytest.mark.parametrize(
    ("clusters", "limit", "outcome"),
    [
        ((), 2, None),
        ((("j-1", "adhoc", "WAITING", ""),), 2, None),
        ((("j-1", "adhoc", "WAITING", ""), ("j-2", "etl", "RUNNING", "")), 2, "too_many"),
        ((("j-1", "adhoc", "WAITING", ""),), 1, "too_many"),
        ((("j-1", "analytics", "WAITING", ""),), 5, "already_active"),  # its cluster name: two of one name
        ((("j-1", "Analytics", "STARTING", ""),), 5, "already_active"),
        ((("j-1", "nightly", "BOOTSTRAPPING", "analytics"),), 5, "already_active"),  # from its template, renamed
        ((("j-1", "nightly", "WAITING", "ANALYTICS"),), 5, "already_active"),
        ((("j-1", "adhoc", "WAITING", ""), ("j-2", "analytics", "WAITING", "")), 2, "already_active"),  # first
    ],
)
def test_when_a_start_is_refused(clusters: tuple, limit: int, outcome: str | None) -> None:
    refused = may_start(ANALYTICS_TEMPLATE, active(*clusters), limit)
    assert (refused.code if refused else None) == outcome
    if refused is not None and outcome == "already_active":
        assert all(c.name.casefold() == "analytics" or c.template.casefold() == "analytics" for c in refused.clusters)
    if refused is not None and outcome == "too_many":
        assert refused.limit == limit and len(refused.clusters) == len(clusters)


def test_a_start_counts_the_clusters_a_listing_does_not_show_yet() -> None:
    just_started = ClusterRecord("j-NEW", "analytics", "STARTING", T0, template="analytics")
    unseen = ClusterRecord("j-OLD", "old", "WAITING", T0, absent=UNSEEN)
    untagged = ClusterRecord("j-UNT", "untagged", "WAITING", T0, absent=UNMANAGED)
    ending = ClusterRecord("j-END", "ending", "TERMINATING", T0, ending=Ending(T0))
    state = State(clusters={r.id: r for r in (just_started, unseen, untagged, ending)})
    listed = [ClusterInfo("j-ADH", "adhoc", "WAITING"), ClusterInfo("j-NEW", "analytics", "BOOTSTRAPPING")]
    found = active_clusters(state, listed)
    assert [(c.id, c.state, c.template) for c in found] == [
        ("j-ADH", "WAITING", ""),
        ("j-NEW", "BOOTSTRAPPING", "analytics"),  # the listing's state, the remembered template
        ("j-OLD", "WAITING", ""),
    ]
    refused = may_start(ANALYTICS_TEMPLATE, found, 10)
    assert refused is not None and refused.clusters[0].id == "j-NEW"


# -- the layers ------------------------------------------------------------------------------

PLUGIN = Path(__file__).resolve().parent.parent / "plugins" / "emr"
PURE = (
    "emr_state",
    "emr_rules",
    "emr_decisions",
    "emr_errors",
    "emr_settings",
    "emr_view",
    "emr_templates",
    "emr_costs",
    "emr_ledger",
    "emr_chart",
    "emr_clicks",
    "emr_blocks",
)
NO_CHAT = ("crossaccount", "emr_adapter", "emr_doctor")
BOTO = ("boto3", "botocore")


def imports_of(module: str) -> set[str]:
    tree = ast.parse((PLUGIN / f"{module.replace('.', '/')}.py").read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize("module", PURE)
def test_the_pure_layer_imports_neither_boto3_nor_errbot_nor_the_adapter(module: str) -> None:
    assert not imports_of(module) & {*BOTO, "errbot", "emr_adapter", "crossaccount", "emr", "emr_doctor"}


@pytest.mark.parametrize("module", NO_CHAT)
def test_the_adapter_and_the_session_import_no_errbot(module: str) -> None:
    assert "errbot" not in imports_of(module) and "emr" not in imports_of(module)


def test_the_service_imports_neither_errbot_nor_boto3_nor_the_plugin() -> None:
    assert not imports_of("emr_service") & {*BOTO, "errbot", "emr", "emr_slack"}


def test_only_the_plugin_and_the_slack_listener_import_errbot() -> None:
    importers = {p.stem for p in PLUGIN.glob("*.py") if "errbot" in imports_of(p.stem)}
    assert importers <= {"emr", "emr_slack"}


def test_only_the_plugin_imports_the_service() -> None:
    importers = {p.stem for p in PLUGIN.glob("*.py") if "emr_service" in imports_of(p.stem)}
    assert importers == {"emr"}


def test_only_the_adapter_and_the_session_import_boto3() -> None:
    importers = {p.stem for p in PLUGIN.glob("*.py") if imports_of(p.stem) & set(BOTO)}
    assert importers <= {"crossaccount", "emr_adapter"}


def test_the_rules_do_not_read_the_clock() -> None:
    for module in PURE:
        source = (PLUGIN / f"{module}.py").read_text()
        assert ".now(" not in source and "utcnow" not in source and "time.time" not in source, module


def test_in_the_layered_package_only_the_aws_layer_imports_boto3() -> None:
    modules = [".".join(p.relative_to(PLUGIN).with_suffix("").parts) for p in (PLUGIN / "emrchatops").rglob("*.py")]
    importers = {m for m in modules if imports_of(m) & set(BOTO)}
    assert importers and all(m.startswith("emrchatops.aws.") for m in importers), importers
    assert not {m for m in modules if imports_of(m) & {"errbot", "emr", "emr_service"}}
