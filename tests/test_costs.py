"""What it costs, the pure layer (DESIGN §13): prices, cost arithmetic, the usage ledger, the report's figures.

No moto, no Errbot: the price table, composition segments and ledgers are data, ``now`` an argument.
The instance composition read from EMR is tested here too, from recorded ``ListInstanceGroups`` /
``ListInstanceFleets`` / ``ListInstances`` answers (the emulator has no instance fleets).
"""

from __future__ import annotations

import json
import re
from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from emrchatops.aws.adapter import (
    EmrAdapter,
    fleet_changing,
    fleet_composition,
    group_changing,
    group_composition,
    instance_composition,
)
from emrchatops.chat.words import View
from emrchatops.domain.costs import (
    Cost,
    Instances,
    Missing,
    NoPrice,
    Price,
    PriceError,
    PricesKept,
    PricesRead,
    cost_between,
    hourly,
    intersect,
    length,
    merge,
    overlay,
    price_table,
    prices_due,
    prices_failed,
    prices_read,
    read_prices,
    shipped_prices,
    subtract,
    summary,
    table_data,
)
from emrchatops.domain.errors import AwsError
from emrchatops.domain.ledger import (
    KEEP,
    LEDGER_VERSION,
    Ledger,
    Unknown,
    Usage,
    bounded,
    cost_so_far,
    ended,
    follow,
    instance_types,
    instances_due,
    instances_seen,
    report,
    resize_check_due,
    seen,
    watch,
)
from emrchatops.domain.rules import Policy
from emrchatops.domain.settings import Settings, TagSelector
from emrchatops.domain.state import ClusterInfo, ClusterRecord, Ending, Hold, State

TOKYO = ZoneInfo("Asia/Tokyo")
PRICES = shipped_prices()
M5 = (Instances("m5.xlarge", 3),)  # the emulator's analytics cluster: 1 primary + 2 core


def jst(hh: int, mm: int = 0, day: int = 1) -> datetime:
    return datetime(2026, 12, day, hh, mm, tzinfo=TOKYO).astimezone(UTC)


# -- prices ----------------------------------------------------------------------------------------

FAMILIES = ("m5", "m6i", "m6g", "m7g", "r5", "r6i", "r6g", "r7g", "c5", "c6i", "c6g", "c7g")
REGIONS = ("ap-northeast-1", "us-east-1", "us-west-2", "eu-west-1")


def test_the_shipped_table_is_dated_sourced_and_covers_the_common_families_in_four_regions() -> None:
    assert PRICES.source.startswith("https://aws.amazon.com/") and isinstance(PRICES.date, date)
    for region in REGIONS:
        for family in FAMILIES:
            for size in ("large", "xlarge", "2xlarge", "4xlarge"):
                price = PRICES.price(region, f"{family}.{size}")
                assert price is not None and 0 < price.emr < price.ec2, (region, family, size)
    assert PRICES.price("us-east-1", "m5.xlarge") == PRICES.price("us-east-1", "m5.xlarge")
    m5 = PRICES.price("us-east-1", "m5.xlarge")
    assert m5 is not None and (m5.ec2, m5.emr) == (0.192, 0.048)  # the published us-east-1 list price


GOOD: dict[str, Any] = {
    "source": "https://example.test/prices",
    "date": "2026-11-01",
    "regions": {"us-east-1": {"m5.xlarge": {"ec2": 0.192, "emr": 0.048}}},
}


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"source": ""}, '"source" is missing'),
        ({"date": "yesterday"}, '"date" must be the day'),
        ({"date": None}, '"date" must be the day'),
        ({"currency": "JPY"}, '"currency" must be USD'),
        ({"regions": {}}, '"regions" must be an object'),
        ({"regions": {"tokyo": {"m5.xlarge": {"ec2": 1, "emr": 1}}}}, "'tokyo' is not a region name"),
        ({"regions": {"us-east-1": {"m5": {"ec2": 1, "emr": 1}}}}, "'m5' is not an instance type"),
        ({"regions": {"us-east-1": {"m5.xlarge": {"ec2": 1}}}}, 'us-east-1 m5.xlarge: expected {"ec2"'),
        ({"regions": {"us-east-1": {"m5.xlarge": {"ec2": "0.19", "emr": 1}}}}, "prices must be numbers"),
        ({"regions": {"us-east-1": {"m5.xlarge": {"ec2": True, "emr": 1}}}}, "prices must be numbers"),
        ({"regions": {"us-east-1": {"m5.xlarge": {"ec2": -1, "emr": 1}}}}, "-1 is not a price per hour"),
        ({"regions": {"us-east-1": {"m5.xlarge": {"ec2": 1e9, "emr": 1}}}}, "is not a price per hour"),
    ],
)
def test_a_bad_price_table_is_refused_naming_the_problem(change: dict[str, Any], problem: str) -> None:
    with pytest.raises(PriceError, match=None) as refused:
        price_table({**GOOD, **change})
    assert problem in str(refused.value)


def test_a_price_file_names_its_path_and_problem(tmp_path: Path) -> None:
    broken = tmp_path / "prices.json"
    broken.write_text('{"source": "x",')
    with pytest.raises(PriceError, match=r"prices.json: not JSON \(line 1"):
        read_prices(broken)
    with pytest.raises(PriceError, match="no such file"):
        read_prices(tmp_path / "missing.json")
    broken.write_text(json.dumps(GOOD))
    assert read_prices(broken).price("us-east-1", "m5.xlarge") is not None


def test_each_entry_says_whether_it_was_read_from_aws_and_when_or_is_an_estimate() -> None:
    regions = {
        "us-east-1": {
            "m4.xlarge": {"ec2": 0.2, "emr": 0.06, "read": "2026-12-01"},
            "m5.xlarge": {"ec2": 0.192, "emr": 0.048, "estimated": True},
            "r5.xlarge": {"ec2": 0.3, "emr": 0.07},  # an operator's own rate: neither read nor estimated
        }
    }
    table = price_table({**GOOD, "regions": regions})
    assert table.price("us-east-1", "m4.xlarge") == Price(0.2, 0.06, read=date(2026, 12, 1))
    assert table.price("us-east-1", "m5.xlarge") == Price(0.192, 0.048, estimated=True)
    assert table.price("us-east-1", "r5.xlarge") == Price(0.3, 0.07)
    assert price_table(table_data(table)) == table  # written back in the same format


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        ({"read": "2026-12-01", "estimated": True}, "either read from AWS or estimated, not both"),
        ({"read": "yesterday"}, '"read" must be the day it was read from AWS, YYYY-MM-DD'),
        ({"estimated": "yes"}, '"estimated" must be true'),
        ({"estimated": False}, '"estimated" must be true'),
        ({"emr_rule": 0.25}, 'expected {"ec2": $/h, "emr": $/h}'),
    ],
)
def test_a_bad_mark_is_refused_naming_the_entry(entry: dict[str, Any], problem: str) -> None:
    regions = {"us-east-1": {"m5.xlarge": {"ec2": 0.192, "emr": 0.048, **entry}}}
    with pytest.raises(PriceError) as refused:
        price_table({**GOOD, "regions": regions})
    assert str(refused.value).startswith("us-east-1 m5.xlarge: ") and problem in str(refused.value)


def test_every_entry_of_the_shipped_table_is_marked_estimated() -> None:
    # Compiled offline (xlarge list prices, sizes scaled, the EMR fee as 25 % of EC2): none was read from AWS.
    entries = [price for types in PRICES.regions.values() for price in types.values()]
    assert len(entries) == 4 * 12 * 7 and all(p.estimated and p.read is None for p in entries)


# -- cost arithmetic -------------------------------------------------------------------------------

H = timedelta(hours=1)
T0 = jst(10)


@pytest.mark.parametrize(
    ("composition", "region", "hours", "expected"),
    [
        (M5, "ap-northeast-1", 1, Cost(3 * (0.248 + 0.062))),
        (M5, "us-east-1", 2, Cost(2 * 3 * 0.24)),
        ((Instances("m5.xlarge", 1), Instances("m5.2xlarge", 2)), "us-east-1", 1, Cost(0.24 + 2 * 0.48)),
        ((Instances("r6g.4xlarge", 4),), "eu-west-1", 0.5, Cost(0.5 * 4 * 4 * 0.2256 * 1.25)),
        ((Instances("m5.xlarge", 1), Instances("m5.xlarge", 2, spot=True)), "us-west-2", 1, Cost(0.72, True)),
        ((Instances("m5.xlarge", 0),), "us-east-1", 5, Cost(0.0)),
        ((), "us-east-1", 5, Cost(0.0)),
        ((Instances("r7gd.16xlarge", 1),), "us-east-1", 1, NoPrice("r7gd.16xlarge", "us-east-1")),
        (M5, "sa-east-1", 1, NoPrice("m5.xlarge", "sa-east-1")),
        (
            (Instances("m5.xlarge", 2), Instances("x2iedn.xlarge", 1)),
            "us-east-1",
            1,
            NoPrice("x2iedn.xlarge", "us-east-1"),
        ),
    ],
)
def test_cost_is_count_times_hours_times_ec2_plus_emr(
    composition: tuple[Instances, ...], region: str, hours: float, expected: Cost | NoPrice
) -> None:
    cost = cost_between(PRICES, region, [(T0, composition)], T0, T0 + hours * H)
    if isinstance(expected, NoPrice):
        assert cost == expected
    else:
        assert isinstance(cost, Cost)
        assert cost.dollars == pytest.approx(expected.dollars) and cost.upper_bound == expected.upper_bound


def test_a_resize_mid_way_is_priced_piecewise() -> None:
    # 3 × m5.xlarge from 10:00, 5 from 11:00 (a resize), 2 from 11:30; asked from 10:30 to 12:00.
    segments = [(T0, M5), (T0 + H, (Instances("m5.xlarge", 5),)), (T0 + 1.5 * H, (Instances("m5.xlarge", 2),))]
    cost = cost_between(PRICES, "us-east-1", segments, T0 + 0.5 * H, T0 + 2 * H)
    assert isinstance(cost, Cost) and cost.dollars == pytest.approx(0.24 * (3 * 0.5 + 5 * 0.5 + 2 * 0.5))
    # The first composition counts from the start, even if it was read later (first seen after creation).
    late = cost_between(PRICES, "us-east-1", [(T0 + H, M5)], T0, T0 + H)
    assert isinstance(late, Cost) and late.dollars == pytest.approx(0.72)


def test_hourly_and_summary() -> None:
    rate = hourly(PRICES, "us-east-1", (Instances("m5.xlarge", 1), Instances("m5.xlarge", 2, spot=True)))
    assert isinstance(rate, Cost) and rate.upper_bound
    assert summary((Instances("m5.xlarge", 1), Instances("m5.xlarge", 2))) == "3 × m5.xlarge"
    assert summary((Instances("m5.xlarge", 1), Instances("r5.xlarge", 2, spot=True))) == (
        "2 × r5.xlarge spot + 1 × m5.xlarge"
    )


def test_a_cost_from_an_estimated_entry_is_marked_estimated_and_one_read_from_aws_is_not() -> None:
    regions = {
        "ap-northeast-1": {
            "m5.xlarge": {"ec2": 0.248, "emr": 0.062, "read": "2026-12-01"},
            "r5.xlarge": {"ec2": 0.304, "emr": 0.076, "estimated": True},
        }
    }
    table = price_table({**GOOD, "regions": regions})
    r5 = (Instances("r5.xlarge", 1),)
    read = cost_between(table, "ap-northeast-1", [(T0, M5)], T0, T0 + H)
    estimated = cost_between(table, "ap-northeast-1", [(T0, r5)], T0, T0 + H)
    resized = cost_between(table, "ap-northeast-1", [(T0, M5), (T0 + H, r5)], T0, T0 + 2 * H)
    assert isinstance(read, Cost) and isinstance(estimated, Cost) and isinstance(resized, Cost)
    assert read.dollars == pytest.approx(3 * 0.31) and not read.estimated
    assert estimated.estimated and resized.estimated and (read + estimated).estimated and not (read + read).estimated
    mixed = hourly(table, "ap-northeast-1", (*M5, *r5))
    assert isinstance(mixed, Cost) and mixed.estimated and not mixed.upper_bound
    # The report's figures carry it, cost and saving alike.
    usage = Usage(CID, "analytics", jst(9), created_at=jst(9), ended_at=jst(10), instances=((jst(9), r5),))
    usage = replace(usage, terminations=((jst(10), "idle"),))
    figures = report(Ledger({CID: usage}), table, "ap-northeast-1", TOKYO, 1, jst(12), time(19), []).total
    assert figures.cost.estimated and figures.saving.estimated and figures.cost.dollars == pytest.approx(0.38)
    on_read = replace(usage, instances=((jst(9), M5),))
    figures = report(Ledger({CID: on_read}), table, "ap-northeast-1", TOKYO, 1, jst(12), time(19), []).total
    assert not figures.cost.estimated and not figures.saving.estimated and figures.cost.dollars > 0


def test_the_status_line_says_an_estimate_and_an_upper_bound_once_each() -> None:
    from emrchatops.chat.words import View
    from emrchatops.domain.ledger import CostSoFar
    from emrchatops.domain.rules import Policy
    from emrchatops.domain.settings import Settings

    view = View(Settings(role_arn="arn:aws:iam::210987654321:role/cre"), Policy())
    spot = (Instances("m5.xlarge", 1), Instances("m5.xlarge", 2, spot=True))
    up = timedelta(hours=4, minutes=10)
    assert view.cost_so_far(CostSoFar(Cost(3.875, upper_bound=True, estimated=True), spot, up)) == (
        "≤ $3.88 so far (estimated prices; 2 × m5.xlarge spot + 1 × m5.xlarge, 4h 10m; spot priced at on-demand: "
        "an upper bound)"
    )
    assert view.cost_so_far(CostSoFar(Cost(3.875), M5, up)) == "≈ $3.88 so far (3 × m5.xlarge, 4h 10m)"


# -- intervals: against a minute-by-minute count ---------------------------------------------------

spans = st.lists(st.tuples(st.integers(0, 120), st.integers(0, 120)), max_size=8)


def as_spans(raw: list[tuple[int, int]]) -> list[tuple[datetime, datetime]]:
    return merge((T0 + timedelta(minutes=a), T0 + timedelta(minutes=b)) for a, b in raw)


def minutes_in(raw: list[tuple[int, int]]) -> set[int]:
    return {m for a, b in raw for m in range(a, b)}


@given(spans, spans)
def test_interval_arithmetic_matches_counting_minutes(a: list[tuple[int, int]], b: list[tuple[int, int]]) -> None:
    sa, sb = as_spans(a), as_spans(b)
    assert length(sa) == timedelta(minutes=len(minutes_in(a)))
    assert length(intersect(sa, sb)) == timedelta(minutes=len(minutes_in(a) & minutes_in(b)))
    assert length(subtract(sa, sb)) == timedelta(minutes=len(minutes_in(a) - minutes_in(b)))


# -- prices read by the bot (PRICES=api) -------------------------------------------------------------

TOKYO_M5 = ("ap-northeast-1", "m5.xlarge")


def reading(day: date, **types: tuple[float, float]) -> PricesRead:
    found = {t.replace("_", "."): Price(*p, read=day) for t, p in types.items()}
    return PricesRead(
        day,
        "AWS Price List Query API (test)",
        {"ap-northeast-1": found},
        (Missing("x9.huge", "ap-northeast-1", "no EMR price"),),
    )


def test_the_bot_reads_aws_prices_once_a_day_and_a_type_seen_for_the_first_time_at_once() -> None:
    kept = PricesKept()
    assert prices_due(kept, {TOKYO_M5}, jst(10)) and not prices_due(kept, set(), jst(10))  # nothing seen: nothing
    kept = prices_read(kept, reading(date(2026, 12, 1), m5_xlarge=(0.248, 0.06)), jst(10))
    assert kept.read_at == kept.tried_at == jst(10) and kept.failure is None
    assert not prices_due(kept, {TOKYO_M5}, jst(10) + 23 * H) and prices_due(kept, {TOKYO_M5}, jst(10) + 24 * H)
    assert prices_due(kept, {TOKYO_M5, ("ap-northeast-1", "r5.xlarge")}, jst(10, 1))  # a new type: at once
    assert not prices_due(kept, {TOKYO_M5, ("ap-northeast-1", "x9.huge")}, jst(10, 1))  # AWS had none: tomorrow
    # A failure keeps the last prices, and is tried again an hour later (not at every tick).
    failed = prices_failed(kept, "AWS's Price List is throttling", jst(10) + 24 * H)
    assert (
        failed.table == kept.table and failed.read_at == jst(10) and failed.failure == "AWS's Price List is throttling"
    )
    assert not prices_due(failed, {TOKYO_M5}, jst(10, 59) + 24 * H) and prices_due(failed, {TOKYO_M5}, jst(11) + 24 * H)
    # The next read replaces what it read again, keeps the rest, and clears the failure.
    again = prices_read(failed, reading(date(2026, 12, 2), r5_xlarge=(0.304, 0.07)), jst(11) + 24 * H)
    assert again.failure is None and again.table is not None and again.table.date == date(2026, 12, 2)
    assert again.table.price(*TOKYO_M5) == Price(0.248, 0.06, read=date(2026, 12, 1))
    assert again.table.price("ap-northeast-1", "r5.xlarge") == Price(0.304, 0.07, read=date(2026, 12, 2))
    assert PricesKept.from_dict(json.loads(json.dumps(again.to_dict()))) == again
    assert PricesKept.from_dict(None) == PricesKept()
    with pytest.raises(ValueError, match="newer"):
        PricesKept.from_dict({**again.to_dict(), "version": 99})


def test_prices_read_from_aws_are_laid_over_the_table_and_the_rest_stays_estimated() -> None:
    kept = prices_read(PricesKept(), reading(date(2026, 12, 1), m5_xlarge=(0.248, 0.06)), jst(10))
    table = overlay(PRICES, kept)
    assert table.price(*TOKYO_M5) == Price(0.248, 0.06, read=date(2026, 12, 1))
    shipped_r5 = PRICES.price("ap-northeast-1", "r5.xlarge")
    assert shipped_r5 is not None and shipped_r5.estimated and table.price("ap-northeast-1", "r5.xlarge") == shipped_r5
    assert table.source == f"AWS Price List Query API (test); the rest: {PRICES.source} of 2026-11-29"
    assert table.date == date(2026, 12, 1)
    assert overlay(PRICES, PricesKept()) is PRICES


# -- the ledger ------------------------------------------------------------------------------------

CID = "j-ANALYTICS"


def record(**changes: Any) -> ClusterRecord:
    return replace(ClusterRecord(CID, "analytics", "WAITING", first_seen=jst(10)), **changes)


def state_of(*records: ClusterRecord) -> State:
    return State(clusters={r.id: r for r in records})


def info(**changes: Any) -> ClusterInfo:
    return replace(ClusterInfo(CID, "analytics", "WAITING", created_at=jst(10), ready_at=jst(10, 5)), **changes)


def scripted_day(restart_at: datetime | None = None, down: timedelta = timedelta()) -> tuple[Ledger, State]:
    """Created 10:00; lock 10:00, unlock 12:00, idle termination 12:30, ended 12:31; the poller every minute.

    *restart_at*: the bot is down from then for *down* (plain data round trip: what storage keeps).
    """
    gap = timedelta(minutes=3)
    ledger = Ledger()
    state = state_of(record())
    hold = Hold("U1", "alice", since=jst(10))
    moment = jst(10)
    while moment <= jst(12, 31):
        if restart_at is not None and moment == restart_at:
            ledger = Ledger.from_dict(json.loads(json.dumps(ledger.to_dict())))
            moment += down
        if moment == jst(10):
            state = state.with_cluster(replace(state.clusters[CID], holds=(hold,)))
        if moment == jst(12):
            state = state.with_cluster(replace(state.clusters[CID], holds=(), last_release=moment))
        if moment == jst(12, 30):
            ending = Ending(moment, rule="idle")
            state = state.with_cluster(replace(state.clusters[CID], ending=ending, state="TERMINATING"))
        if moment < jst(12, 30):
            ledger = seen(ledger, [info()], moment)
        if moment == jst(12, 31):
            state = state.without_cluster(CID)
            ledger = ended(follow(ledger, state, moment), info(state="TERMINATED", ended_at=jst(12, 30)), moment)
        ledger = follow(watch(ledger, moment, gap), state, moment)
        if moment == jst(10):
            ledger = instances_seen(ledger, state, CID, M5, moment)
        moment += timedelta(minutes=1)
    return ledger, state


def day_figures(ledger: Ledger, state: State, now: datetime, *, days: int = 1) -> Any:
    return report(ledger, PRICES, "ap-northeast-1", TOKYO, days, now, time(19), list(state.clusters))


RATE = 3 * (0.248 + 0.062)  # 3 × m5.xlarge in Tokyo, $/h


@pytest.mark.parametrize(
    ("restart_at", "down"),
    [
        (None, timedelta()),
        (jst(11), timedelta()),
        (jst(11), timedelta(minutes=20)),
        (jst(12, 10), timedelta(minutes=5)),
    ],
)
def test_the_scripted_day_is_exact_whatever_the_restarts(restart_at: datetime | None, down: timedelta) -> None:
    ledger, state = scripted_day(restart_at, down)
    r = day_figures(ledger, state, jst(20))
    [(day, f)] = r.days
    assert day == date(2026, 12, 1)
    assert f.up == timedelta(hours=2, minutes=30)  # EMR's timeline: 10:00 to 12:30, restart or not
    assert f.held == timedelta(hours=2)  # the holds survive the restart: 10:00 to 12:00 exactly
    assert f.busy == timedelta()
    # Unheld and down: from the last tick before the restart (a minute before it) to the first after it.
    idle_lost = (
        down + timedelta(minutes=1) if restart_at is not None and restart_at >= jst(12) and down else timedelta()
    )
    assert f.idle == timedelta(minutes=30) - idle_lost  # the bot's downtime is not idle …
    assert f.unwatched == idle_lost  # … it is not watched
    assert f.terminations == {"idle": 1}
    assert f.cost.dollars == pytest.approx(2.5 * RATE) and not f.cost.upper_bound
    assert f.saving.dollars == pytest.approx(6.5 * RATE)  # 12:30 to END_OF_DAY 19:00
    assert r.total == f


def test_a_saving_is_never_counted_beyond_now() -> None:
    ledger, state = scripted_day()
    [(_, f)] = day_figures(ledger, state, jst(13, 30)).days
    assert f.saving.dollars == pytest.approx(1.0 * RATE)


def test_an_end_of_day_saving_runs_to_the_next_hold_at_most_24_hours() -> None:
    usage = Usage(CID, "analytics", jst(9), created_at=jst(9), ended_at=jst(19), instances=((jst(9), M5),))
    usage = replace(usage, terminations=((jst(19), "end_of_day"),))
    other = Usage("j-NEXT", "next", jst(8, 30, day=2), created_at=jst(8, 30, day=2), ended_at=jst(9, day=2))
    nobody = Ledger({CID: usage})
    r = report(nobody, PRICES, "ap-northeast-1", TOKYO, 3, jst(12, day=3), time(19), [])
    assert r.total.saving.dollars == pytest.approx(24 * RATE)  # capped at 24 h
    r = report(nobody.with_usage(other), PRICES, "ap-northeast-1", TOKYO, 3, jst(12, day=3), time(19), [])
    assert r.total.saving.dollars == pytest.approx(13.5 * RATE)  # until the next day's start at 08:30


def test_days_are_local_dates_and_a_cluster_over_midnight_is_split() -> None:
    usage = Usage(CID, "analytics", jst(22), created_at=jst(22), ended_at=jst(2, day=2), instances=((jst(22), M5),))
    r = report(Ledger({CID: usage}), PRICES, "ap-northeast-1", TOKYO, 2, jst(12, day=2), time(19), [])
    assert [(d, f.up) for d, f in r.days] == [
        (date(2026, 12, 1), timedelta(hours=2)),
        (date(2026, 12, 2), timedelta(hours=2)),
    ]
    assert r.total.cost.dollars == pytest.approx(4 * RATE)


def test_an_unknown_price_leaves_the_cost_out_and_says_so() -> None:
    usage = Usage(
        CID, "analytics", jst(10), created_at=jst(10), instances=((jst(10), (Instances("r7gd.16xlarge", 1),)),)
    )
    r = report(Ledger({CID: usage}), PRICES, "ap-northeast-1", TOKYO, 1, jst(12), time(19), [CID])
    assert r.total.cost.dollars == 0
    assert r.total.unknown == (Unknown("analytics", price=NoPrice("r7gd.16xlarge", "ap-northeast-1")),)
    assert r.total.up == timedelta(hours=2)


def test_a_cluster_whose_instances_were_never_read_makes_the_cost_partial_never_zero() -> None:
    known = Usage(CID, "analytics", jst(10), created_at=jst(10), instances=((jst(10), M5),))
    unread = Usage("j-OTHER", "adhoc", jst(10), created_at=jst(10), instances_problem="AWS denied x:Y")
    ledger = Ledger({CID: known, "j-OTHER": unread})
    r = report(ledger, PRICES, "ap-northeast-1", TOKYO, 1, jst(12), time(19), [CID, "j-OTHER"])
    assert r.total.cost.dollars == pytest.approx(2 * RATE)  # the known part only …
    assert r.total.unknown == (Unknown("adhoc", problem="AWS denied x:Y"),)  # … and it says so
    assert r.days[0][1].unknown == r.total.unknown
    view = View(Settings(role_arn="arn:aws:iam::210987654321:role/cre"), Policy())
    text = view.report(r, 1, jst(12))
    [row] = [line for line in text.splitlines() if line.startswith("12-01 Tue")]
    assert f"≥${2 * RATE:.2f}" in row, row
    assert "Cost of adhoc unknown: its instances could not be read (AWS denied x:Y; see !emr doctor)" in text


def test_the_ledger_keeps_90_days_and_round_trips_as_plain_data() -> None:
    ledger, _ = scripted_day()
    assert Ledger.from_dict(json.loads(json.dumps(ledger.to_dict()))) == ledger
    assert bounded(ledger, jst(20)) is ledger
    assert bounded(ledger, jst(12, 31) + KEEP + timedelta(minutes=1)).clusters == {}
    assert bounded(ledger, jst(12, 31) + KEEP + timedelta(minutes=1)).watched == ()


def test_a_newer_ledger_is_refused_and_none_starts_from_the_state() -> None:
    with pytest.raises(ValueError, match="newer than this code reads"):
        Ledger.from_dict({"version": LEDGER_VERSION + 1})
    upgraded = Ledger.from_dict(None, state_of(record(holds=(Hold("U1", "alice", since=jst(9)),))))
    assert upgraded.clusters[CID].held_since == jst(9)  # a hold taken before the upgrade counts in full


def test_a_hold_taken_while_the_ledger_was_not_written_counts_from_its_since() -> None:
    # A kill -9 between the state's write and the ledger's: the next save finds the hold and dates it exactly.
    state = state_of(record(holds=(Hold("U1", "alice", since=jst(10)),)))
    ledger = follow(Ledger(), state, jst(10, 7))
    assert ledger.clusters[CID].held_since == jst(10)
    released = state.with_cluster(record(last_release=jst(11)))
    assert follow(ledger, released, jst(11, 9)).clusters[CID].held == ((jst(10), jst(11)),)


def test_the_instance_types_the_ledger_knows_are_those_of_every_composition() -> None:
    ledger, _ = scripted_day()
    assert instance_types(ledger) == {"m5.xlarge"} and instance_types(Ledger()) == frozenset()
    resized = replace(
        ledger.clusters[CID], instances=((jst(10), M5), (jst(11), (Instances("r5.xlarge", 2, spot=True),)))
    )
    assert instance_types(ledger.with_usage(resized)) == {"m5.xlarge", "r5.xlarge"}


def test_instances_are_read_once_and_again_after_a_state_change() -> None:
    state = state_of(record())
    assert instances_due(Ledger(), state) == [CID]
    ledger = instances_seen(Ledger(), state, CID, M5, jst(10))
    assert instances_due(ledger, state) == []
    running = state.with_cluster(record(state="RUNNING"))
    assert instances_due(ledger, running) == [CID]
    resized = instances_seen(ledger, running, CID, (Instances("m5.xlarge", 5),), jst(11))
    assert [c for _, c in resized.clusters[CID].instances] == [M5, (Instances("m5.xlarge", 5),)]
    so_far = cost_so_far(resized, PRICES, "ap-northeast-1", CID, jst(12))
    assert isinstance(so_far.cost, Cost) and so_far.cost.dollars == pytest.approx(RATE + RATE * 5 / 3)
    assert so_far.up == timedelta(hours=2)  # first seen at 10:00 (no EMR timeline in this ledger)


def test_a_steady_tick_changes_the_ledger_once_a_minute_at_most() -> None:
    ledger, _ = scripted_day()
    later = watch(ledger, jst(12, 31) + timedelta(seconds=30), timedelta(minutes=3))
    assert later is ledger
    assert seen(ledger, [], jst(12, 32)) is ledger


# -- instance composition from EMR's answers (recorded shapes) ------------------------------------

GROUPS = [  # ListInstanceGroups of a resizing cluster (shape as EMR returns it)
    {"Id": "ig-1", "Market": "ON_DEMAND", "InstanceGroupType": "MASTER", "InstanceType": "m5.xlarge",
     "RequestedInstanceCount": 1, "RunningInstanceCount": 1, "Status": {"State": "RUNNING"}},
    {"Id": "ig-2", "Market": "ON_DEMAND", "InstanceGroupType": "CORE", "InstanceType": "r5.2xlarge",
     "RequestedInstanceCount": 4, "RunningInstanceCount": 2, "Status": {"State": "RESIZING"}},
    {"Id": "ig-3", "Market": "SPOT", "InstanceGroupType": "TASK", "InstanceType": "c5.xlarge",
     "RequestedInstanceCount": 3, "RunningInstanceCount": 3, "Status": {"State": "RUNNING"}},
    {"Id": "ig-4", "Market": "SPOT", "InstanceGroupType": "TASK", "InstanceType": "c5.4xlarge",
     "RequestedInstanceCount": 0, "RunningInstanceCount": 0, "Status": {"State": "ENDED"}},
    {"Id": "ig-5", "Market": "ON_DEMAND", "InstanceGroupType": "TASK", "InstanceType": "m5.large",
     "RequestedInstanceCount": 2, "RunningInstanceCount": 0, "Status": {"State": "PROVISIONING"}},
]  # fmt: skip
FLEETS = [  # ListInstanceFleets: a one-type primary fleet, a mixed core fleet
    {"Id": "if-1", "InstanceFleetType": "MASTER", "Status": {"State": "RUNNING"},
     "TargetOnDemandCapacity": 1, "ProvisionedOnDemandCapacity": 1, "ProvisionedSpotCapacity": 0,
     "InstanceTypeSpecifications": [{"InstanceType": "m5.xlarge", "WeightedCapacity": 1}]},
    {"Id": "if-2", "InstanceFleetType": "CORE", "Status": {"State": "RUNNING"},
     "ProvisionedOnDemandCapacity": 4, "ProvisionedSpotCapacity": 8,
     "InstanceTypeSpecifications": [{"InstanceType": "r5.xlarge", "WeightedCapacity": 4},
                                    {"InstanceType": "r5.2xlarge", "WeightedCapacity": 8}]},
]  # fmt: skip
CORE_INSTANCES = [  # ListInstances of the mixed fleet
    {"Id": "ci-1", "InstanceType": "r5.xlarge", "Market": "ON_DEMAND", "Status": {"State": "RUNNING"}},
    {"Id": "ci-2", "InstanceType": "r5.2xlarge", "Market": "SPOT", "Status": {"State": "RUNNING"}},
]


def test_instance_groups_count_running_instances_and_requested_ones_while_they_come() -> None:
    assert group_composition(GROUPS) == (
        Instances("m5.xlarge", 1),
        Instances("r5.2xlarge", 4),  # resizing up: the larger of running and requested (an upper bound)
        Instances("c5.xlarge", 3, spot=True),
        Instances("m5.large", 2),  # provisioning: billed as they launch
    )


def test_a_group_or_fleet_being_resized_is_changing_and_a_steady_one_is_not() -> None:
    assert [group_changing(g) for g in GROUPS] == [False, True, False, False, True]
    assert not group_changing({**GROUPS[0], "RunningInstanceCount": 1, "RequestedInstanceCount": 1})
    assert group_changing({**GROUPS[0], "RequestedInstanceCount": 3})  # asked for, not yet RESIZING
    assert [fleet_changing(f) for f in FLEETS] == [False, False]
    assert fleet_changing({**FLEETS[0], "TargetOnDemandCapacity": 5})


def test_a_resize_check_is_due_once_per_five_minute_slot_and_every_minute_while_resizing() -> None:
    start = jst(10)
    checks = [start + timedelta(seconds=30 * k) for k in range(1, 121)]  # an hour of ticks at 30 s
    read = start
    due = 0
    for moment in checks:
        if resize_check_due(CID, read, moment, False):
            due, read = due + 1, moment
    assert due == 12
    assert not resize_check_due(CID, start, start + timedelta(seconds=59), True)
    assert resize_check_due(CID, start, start + timedelta(minutes=1), True)
    phases = {
        next(k for k in range(600) if resize_check_due(c, start, start + timedelta(seconds=k), False))
        for c in (f"j-{n:04d}" for n in range(50))
    }
    assert len(phases) > 25  # clusters read together are re-read spread over the 5 minutes


def test_fleets_of_one_type_count_capacity_units_and_mixed_fleets_are_listed() -> None:
    assert fleet_composition(FLEETS[0]) == [Instances("m5.xlarge", 1)]
    assert fleet_composition(FLEETS[1]) is None
    assert instance_composition(CORE_INSTANCES) == [Instances("r5.2xlarge", 1, True), Instances("r5.xlarge", 1)]


class RecordedSession:
    """Answers like EMR's for a fleet cluster: ListInstanceGroups refused, fleets and instances paginated."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def call(self, service: str, operation: str, action: str, **params: Any) -> dict[str, Any]:
        self.calls.append((operation, params))
        if operation == "list_instance_groups":
            raise AwsError(
                "AWS refused elasticmapreduce:ListInstanceGroups (account 1, us-east-1): InvalidRequestException: "
                "Instance groups are not supported for clusters with instance fleets"
            )
        if operation == "list_instance_fleets":
            return (
                {"InstanceFleets": [FLEETS[0]], "Marker": "m"}
                if "Marker" not in params
                else {"InstanceFleets": [FLEETS[1]]}
            )
        if operation == "list_instances":
            assert params["InstanceFleetId"] == "if-2"
            return {"Instances": CORE_INSTANCES}
        raise AssertionError(operation)


def test_a_fleet_cluster_is_read_through_list_instance_fleets_and_list_instances() -> None:
    session = RecordedSession()
    adapter = EmrAdapter(session, TagSelector("emr-chatops", "true"))  # type: ignore[arg-type]
    assert adapter.instances("j-FLEET") == (
        Instances("m5.xlarge", 1),
        Instances("r5.2xlarge", 1, True),
        Instances("r5.xlarge", 1),
    )
    assert [op for op, _ in session.calls] == [
        "list_instance_groups",
        "list_instance_fleets",
        "list_instance_fleets",
        "list_instances",
    ]


def test_the_chart_is_a_png_of_the_days_asked() -> None:
    from emrchatops.chat.chart import render

    ledger, state = scripted_day()
    png = render(day_figures(ledger, state, jst(20), days=7), "EMR usage, last 7 days (Asia/Tokyo)")
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and 10_000 < len(png) < 500_000
    width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    assert (width, height) == (1000, 500)
    from emrchatops.chat.chart import headline

    # The title's totals: "\\$" is a dollar sign to matplotlib; estimated prices are said there too.
    said = headline(day_figures(ledger, state, jst(20)))
    assert re.fullmatch(
        r"total: 2\.5 h up, \\\$2\.3\d \(estimated prices\), saved ≈ \\\$6\.0\d by the automatic rules", said
    )


def test_an_upgrade_from_a_stored_v2_state_starts_the_ledger_with_its_holds() -> None:
    stored = json.loads((Path(__file__).parent / "fixtures" / "state-v2.json").read_text())
    ledger = Ledger.from_dict(None, State.from_dict(stored))
    assert set(ledger.clusters) == set(stored["clusters"])
    # alice held it since 10:05 JST, bob since 10:06: held from the earliest, nothing else invented.
    assert ledger.clusters["j-ANALYTICS0001"].held_since == jst(10, 5)
    assert ledger.clusters["j-LOGANALYSIS01"].held_since is None
    assert ledger.watched == () and all(not u.busy and not u.instances for u in ledger.clusters.values())


def test_a_dst_day_is_23_hours_long_in_new_york() -> None:
    new_york = ZoneInfo("America/New_York")
    start = datetime(2026, 3, 7, 12, tzinfo=new_york).astimezone(UTC)  # the day before DST starts
    end = datetime(2026, 3, 9, 12, tzinfo=new_york).astimezone(UTC)
    usage = Usage(CID, "analytics", start, created_at=start, ended_at=end, instances=((start, M5),))
    r = report(Ledger({CID: usage}), PRICES, "us-east-1", new_york, 3, end, time(19), [])
    assert [(d.isoformat(), f.up) for d, f in r.days] == [
        ("2026-03-07", timedelta(hours=12)),
        ("2026-03-08", timedelta(hours=23)),  # 2 a.m. does not exist that day
        ("2026-03-09", timedelta(hours=12)),
    ]
    assert r.total.up == end - start


def test_up_time_is_emrs_own_from_the_creation_not_from_the_bots_first_sight() -> None:
    # The bot started at 10:00; the cluster was created at 09:00 (EMR's timeline says so).
    ledger = seen(Ledger(), [info(created_at=jst(9))], jst(10))
    ledger = instances_seen(ledger, state_of(record()), CID, M5, jst(10))
    so_far = cost_so_far(ledger, PRICES, "ap-northeast-1", CID, jst(11))
    assert so_far.up == timedelta(hours=2) and isinstance(so_far.cost, Cost)
    assert so_far.cost.dollars == pytest.approx(2 * RATE)
    [(_, f)] = report(ledger, PRICES, "ap-northeast-1", TOKYO, 1, jst(11), time(19), [CID]).days
    assert f.up == timedelta(hours=2)


def test_a_version_1_ledger_belongs_to_the_one_target_it_served() -> None:
    """A ledger written before targets (tests/fixtures/ledger-v1.json, by the v1 code) is the configured
    target's: each cluster gets its target and region, and nothing else changes."""
    stored = json.loads((Path(__file__).parent / "fixtures" / "ledger-v1.json").read_text())
    assert stored["version"] == 1
    ledger = Ledger.from_dict(stored, None, ("game-a", "ap-northeast-1"))
    assert {(u.target, u.region) for u in ledger.clusters.values()} == {("game-a", "ap-northeast-1")}
    again = ledger.to_dict()
    assert again["version"] == LEDGER_VERSION == 2
    for usage in again["clusters"].values():
        del usage["target"], usage["region"]
    assert {**again, "version": 1} == stored
    assert Ledger.from_dict(ledger.to_dict()) == ledger
