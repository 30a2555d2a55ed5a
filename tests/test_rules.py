"""The pure rules, table-driven: no AWS, no chat, time passed in."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from emr_rules import (
    HISTORY_LIMIT,
    ClusterInfo,
    Policy,
    State,
    Terminate,
    Warn,
    add_hold,
    drop_hold,
    next_deadline,
    observe,
    overtime_until,
    plan_tick,
    set_overtime,
    terminated,
    termination_failed,
)

TOKYO = Policy()  # 30 min idle, 5 min warning, 19:00 Asia/Tokyo
T0 = datetime(2026, 12, 1, 1, 0, tzinfo=UTC)  # 10:00 JST
CID = "j-ANALYTICS0001"


def waiting(state: str = "WAITING", ready: datetime | None = T0) -> list[ClusterInfo]:
    return [ClusterInfo(CID, "analytics", state, created_at=ready, ready_at=ready)]


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def run(state: State, minutes: float, policy: Policy = TOKYO, cluster_state: str = "WAITING") -> tuple[State, list]:
    now = at(minutes)
    state, _ = observe(state, waiting(cluster_state), now)
    return plan_tick(state, policy, now)


def test_an_unheld_waiting_cluster_is_warned_at_25_and_terminated_at_30_minutes() -> None:
    state, _ = observe(State(), waiting(), at(0))
    state, effects = run(state, 24.5)
    assert effects == []
    state, effects = run(state, 25)
    assert [type(e) for e in effects] == [Warn] and effects[0].deadline.at == at(30)
    state, effects = run(state, 26)
    assert effects == []  # warned once
    state, effects = run(state, 30)
    assert [type(e) for e in effects] == [Terminate] and effects[0].rule == "idle"


def test_a_hold_cancels_the_idle_clock_and_the_last_release_restarts_it() -> None:
    state, _ = observe(State(), waiting(), at(0))
    state = add_hold(state, CID, "U1", "alice", "", at(20))
    state, effects = run(state, 60)
    assert effects == []
    state = add_hold(state, CID, "U2", "bob", "", at(61))
    state = drop_hold(state, CID, "U1", at(62))
    assert next_deadline(state, state.clusters[CID], TOKYO, at(62)).rule == "end_of_day"  # bob still holds
    state = drop_hold(state, CID, "U2", at(70))
    deadline = next_deadline(state, state.clusters[CID], TOKYO, at(70))
    assert (deadline.rule, deadline.at, deadline.idle_since) == ("idle", at(100), at(70))


def test_a_busy_cluster_is_never_idle_and_its_clock_restarts_on_return_to_waiting() -> None:
    state, _ = observe(State(), waiting("RUNNING"), at(0))
    state, effects = run(state, 120, cluster_state="RUNNING")
    assert effects == []
    state, effects = run(state, 125, cluster_state="WAITING")
    deadline = next_deadline(state, state.clusters[CID], TOKYO, at(125))
    assert deadline.at == at(155)


def test_an_old_cluster_first_seen_now_gets_the_full_grace() -> None:
    old = T0 - timedelta(hours=5)
    state, _ = observe(State(), waiting(ready=old), at(0))
    deadline = next_deadline(state, state.clusters[CID], TOKYO, at(0))
    assert (deadline.at, deadline.idle_since) == (at(30), at(0))


@pytest.mark.parametrize(
    ("zone", "day", "expected_utc"),
    [
        ("Asia/Tokyo", date(2026, 12, 1), datetime(2026, 12, 1, 10, 0, tzinfo=UTC)),
        ("America/New_York", date(2026, 10, 31), datetime(2026, 10, 31, 23, 0, tzinfo=UTC)),  # EDT
        ("America/New_York", date(2026, 11, 1), datetime(2026, 11, 2, 0, 0, tzinfo=UTC)),  # fall back: EST
        ("America/New_York", date(2026, 3, 8), datetime(2026, 3, 8, 23, 0, tzinfo=UTC)),  # spring forward: EDT
    ],
)
def test_end_of_day_is_local_wall_time_across_dst(zone: str, day: date, expected_utc: datetime) -> None:
    assert Policy(timezone=ZoneInfo(zone)).end_of_day_at(day) == expected_utc


def test_an_end_of_day_inside_the_spring_forward_gap_runs_once() -> None:
    policy = Policy(end_of_day=time(2, 30), timezone=ZoneInfo("America/New_York"))
    start = datetime(2026, 3, 8, 5, 0, tzinfo=UTC)  # 00:00 EST
    state, _ = observe(State(), [ClusterInfo(CID, "analytics", "RUNNING", start, start)], start)
    passes = []
    now = start
    while now < start + timedelta(hours=6):
        state, effects = plan_tick(state, policy, now)
        passes += [now for e in effects if isinstance(e, Terminate)]
        if effects and isinstance(effects[-1], Terminate):
            state = terminated(state, CID, now, rule="end_of_day", who=None)
            state, _ = observe(state, [], now)
        now += timedelta(minutes=1)
    # 02:30 does not exist that night: zoneinfo reads it as 03:30 EDT (07:30 UTC).
    assert passes == [datetime(2026, 3, 8, 7, 30, tzinfo=UTC)]


def test_end_of_day_terminates_held_clusters_and_mentions_holders_in_the_warning() -> None:
    state, _ = observe(State(), waiting("RUNNING"), at(0))
    state = add_hold(state, CID, "U1", "alice", "report", at(1))
    warn_at = datetime(2026, 12, 1, 9, 55, tzinfo=UTC)  # 18:55 JST
    state, effects = plan_tick(state, TOKYO, warn_at)
    assert [type(e) for e in effects] == [Warn]
    assert effects[0].deadline.rule == "end_of_day" and [h.name for h in effects[0].cluster.holds] == ["alice"]
    state, effects = plan_tick(state, TOKYO, warn_at + timedelta(minutes=5))
    assert [(type(e), e.rule) for e in effects] == [(Terminate, "end_of_day")]  # type: ignore[union-attr]
    assert state.end_of_day_done == date(2026, 12, 1)


def test_overtime_moves_the_end_of_day_for_that_cluster() -> None:
    state, _ = observe(State(), waiting("RUNNING"), at(0))
    state = add_hold(state, CID, "U1", "alice", "", at(1))
    until, day = overtime_until(TOKYO, state, time(21, 0), at(2))
    assert until == datetime(2026, 12, 1, 12, 0, tzinfo=UTC) and day == date(2026, 12, 1)
    state = set_overtime(state, CID, "U1", "alice", until, day, at(2))
    eod = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
    state, effects = plan_tick(state, TOKYO, eod)
    assert effects == []
    state, effects = plan_tick(state, TOKYO, until - timedelta(minutes=5))
    assert [type(e) for e in effects] == [Warn] and effects[0].deadline.rule == "overtime"
    state, effects = plan_tick(state, TOKYO, until)
    assert [(type(e), e.rule) for e in effects] == [(Terminate, "overtime")]  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("hhmm", "problem"),
    [
        (time(3, 30), "overtime can last until 03:00 at the latest"),
        (time(18, 0), "overtime can last until 03:00 at the latest"),  # 18:00 means tomorrow
    ],
)
def test_overtime_is_bounded(hhmm: time, problem: str) -> None:
    state, _ = observe(State(), waiting(), at(0))
    with pytest.raises(ValueError, match=problem):
        overtime_until(TOKYO, state, hhmm, at(1))
    assert overtime_until(TOKYO, state, time(1, 0), at(1))[0] == datetime(2026, 12, 1, 16, 0, tzinfo=UTC)
    assert overtime_until(TOKYO, state, None, at(1))[0] == datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def test_a_failed_termination_is_announced_once_per_cause_and_retried() -> None:
    state, _ = observe(State(), waiting(), at(0))
    state, effects = run(state, 30)
    assert isinstance(effects[0], Terminate)
    state, new = termination_failed(state, CID, "TerminationProtected", "protected", at(30))
    assert new
    state, new = termination_failed(state, CID, "TerminationProtected", "protected", at(31))
    assert not new
    state, effects = run(state, 31)
    assert [type(e) for e in effects] == [Terminate]  # retried every tick
    state, new = termination_failed(state, CID, "AccessDenied", "denied", at(32))
    assert new


def test_a_lock_cancels_a_pending_idle_termination() -> None:
    state, _ = observe(State(), waiting(), at(0))
    state, effects = run(state, 30)
    state, _ = termination_failed(state, CID, "Unreachable", "timeout", at(30))
    state = add_hold(state, CID, "U1", "alice", "", at(31))
    state, effects = run(state, 32)
    assert effects == []


def test_the_missed_pass_of_yesterday_does_not_run_today() -> None:
    state, _ = observe(State(), waiting("RUNNING"), at(0))
    state = add_hold(state, CID, "U1", "alice", "", at(1))
    after_midnight = datetime(2026, 12, 1, 15, 10, tzinfo=UTC)  # 00:10 JST on Dec 2
    state, effects = plan_tick(state, TOKYO, after_midnight)
    assert effects == []
    assert next_deadline(state, state.clusters[CID], TOKYO, after_midnight).at == datetime(
        2026, 12, 2, 10, 0, tzinfo=UTC
    )


def test_a_cluster_started_after_the_pass_is_left_to_the_idle_rule_until_tomorrow() -> None:
    after = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
    state, _ = plan_tick(State(), TOKYO, after)  # the pass runs (no cluster)
    late = after + timedelta(minutes=20)
    state, _ = observe(state, [ClusterInfo(CID, "late", "WAITING", late, late)], late)
    state = add_hold(state, CID, "U1", "alice", "", late)
    state, effects = plan_tick(state, TOKYO, late + timedelta(hours=2))
    assert effects == []
    deadline = next_deadline(state, state.clusters[CID], TOKYO, late)
    assert (deadline.rule, deadline.at) == ("end_of_day", datetime(2026, 12, 2, 10, 0, tzinfo=UTC))


def test_state_round_trips_through_plain_data() -> None:
    state, _ = observe(State(), waiting(), at(0))
    state = add_hold(state, CID, "U1", "alice", "解析 🚀", at(1))
    until, day = overtime_until(TOKYO, state, time(20, 0), at(2))
    state = set_overtime(state, CID, "U1", "alice", until, day, at(2))
    state, _ = run(state, 3)
    assert State.from_dict(state.to_dict()) == state
    with pytest.raises(ValueError, match="unsupported state version"):
        State.from_dict({"version": 99})


def test_a_vanished_cluster_ends_its_holds_and_is_not_resurrected() -> None:
    state, _ = observe(State(), waiting(), at(0))
    state = add_hold(state, CID, "U1", "alice", "", at(1))
    state, vanished = observe(state, [], at(2))
    assert [r.id for r in vanished] == [CID] and state.clusters == {}
    assert state.history[-1].kind == "gone"
    state, _ = observe(state, waiting(), at(3))  # a stale listing
    assert CID not in state.clusters


def test_history_is_bounded_in_storage() -> None:
    state, _ = observe(State(), waiting(), at(0))
    for i in range(HISTORY_LIMIT + 50):
        state = add_hold(state, CID, f"U{i}", f"user{i}", "", at(i / 100))
    assert len(state.history) == HISTORY_LIMIT
    assert state.history[-1].who == f"user{HISTORY_LIMIT + 49}"
    assert len(State.from_dict(state.to_dict()).history) == HISTORY_LIMIT
