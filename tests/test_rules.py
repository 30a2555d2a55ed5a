"""The pure rules, table-driven: no AWS, no chat, time passed in."""

from __future__ import annotations

import itertools
import json
from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from emrchatops.domain.rules import (
    Cancelled,
    ClusterInfo,
    Expire,
    Hold,
    Policy,
    Ready,
    Remind,
    State,
    Terminate,
    Warn,
    activity_seen,
    activity_unknown,
    add_hold,
    after_end_of_day,
    backstop_due,
    backstop_failed,
    backstop_set,
    drop_hold,
    needs_step_check,
    next_deadline,
    observe,
    overtime_night,
    overtime_until,
    plan_tick,
    set_overtime,
    settle,
    started,
    steps_seen,
    terminated,
    termination_failed,
    termination_refusal,
    to_recheck,
)
from emrchatops.domain.state import HISTORY_LIMIT, RECORD_LIMIT, STATE_VERSION, UNMANAGED, UNSEEN, Activity, migrate

TOKYO = Policy()  # 30 min idle, 5 min warning, 19:00 Asia/Tokyo
T0 = datetime(2026, 12, 1, 1, 0, tzinfo=UTC)  # 10:00 JST
EOD = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)  # 19:00 JST
CID = "j-ANALYTICS0001"


def waiting(state: str = "WAITING", ready: datetime | None = T0) -> list[ClusterInfo]:
    return [ClusterInfo(CID, "analytics", state, created_at=ready, ready_at=ready)]


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def jst(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 12, day, hour, minute, tzinfo=ZoneInfo("Asia/Tokyo")).astimezone(UTC)


def run(state: State, minutes: float, policy: Policy = TOKYO, cluster_state: str = "WAITING") -> tuple[State, list]:
    now = at(minutes)
    state = observe(state, waiting(cluster_state), now)
    return plan_tick(state, policy, now)


def held_state(now: datetime = T0, cluster_state: str = "RUNNING") -> State:
    state = observe(State(), waiting(cluster_state), now)
    return add_hold(state, CID, "U1", "alice", "", now)


def test_an_unheld_waiting_cluster_is_warned_at_25_and_terminated_at_30_minutes() -> None:
    state = observe(State(), waiting(), at(0))
    state, effects = run(state, 24.5)
    assert effects == []
    state, effects = run(state, 25)
    assert [type(e) for e in effects] == [Warn] and effects[0].deadline.at == at(30)
    state, effects = run(state, 26)
    assert effects == []  # warned once
    state, effects = run(state, 30)
    assert [type(e) for e in effects] == [Terminate] and effects[0].rule == "idle"
    assert effects[0].expect == frozenset({"WAITING"})  # re-read before acting: still WAITING, or no


def test_warn_minutes_zero_sends_no_warning_and_still_terminates() -> None:
    policy = Policy(warn_minutes=0)
    state = observe(State(), waiting(), at(0))
    for minute in range(30):
        state, effects = run(state, minute, policy)
        assert effects == []
    state, effects = run(state, 30, policy)
    assert [type(e) for e in effects] == [Terminate]
    assert not [e for e in state.history if e.kind == "warning"]


def test_a_hold_cancels_the_idle_clock_and_the_last_release_restarts_it() -> None:
    state = observe(State(), waiting(), at(0))
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
    state = observe(State(), waiting("RUNNING"), at(0))
    state, effects = run(state, 120, cluster_state="RUNNING")
    assert effects == []
    state, effects = run(state, 125, cluster_state="WAITING")
    deadline = next_deadline(state, state.clusters[CID], TOKYO, at(125))
    assert deadline.at == at(155)


def test_an_old_cluster_first_seen_now_gets_the_full_grace() -> None:
    old = T0 - timedelta(hours=5)
    state = observe(State(), waiting(ready=old), at(0))
    deadline = next_deadline(state, state.clusters[CID], TOKYO, at(0))
    assert (deadline.at, deadline.idle_since) == (at(30), at(0))


# -- steps between two ticks -----------------------------------------------------------------


def test_the_steps_are_read_only_when_the_idle_rule_is_about_to_act() -> None:
    state = observe(State(), waiting(), at(0))
    record = state.clusters[CID]
    assert [m for m in range(0, 40) if needs_step_check(state, record, TOKYO, at(m))] == list(range(25, 40))
    state, _ = run(state, 25)  # the warning is sent: no more reads until the deadline
    record = state.clusters[CID]
    assert [m for m in range(25, 40) if needs_step_check(state, record, TOKYO, at(m))] == list(range(30, 40))
    held = add_hold(state, CID, "U1", "alice", "", at(26))
    assert not needs_step_check(held, held.clusters[CID], TOKYO, at(31))


def test_a_step_that_ended_between_two_ticks_restarts_the_idle_clock() -> None:
    state = observe(State(), waiting(), at(0))
    state = steps_seen(state, CID, at(20), running=False, now=at(30))  # WAITING → RUNNING → WAITING unseen
    deadline = next_deadline(state, state.clusters[CID], TOKYO, at(30))
    assert (deadline.at, deadline.idle_since) == (at(50), at(20))
    assert steps_seen(state, CID, at(10), running=False, now=at(31)) == state  # an older step changes nothing
    busy = steps_seen(state, CID, None, running=True, now=at(31))
    assert next_deadline(busy, busy.clusters[CID], TOKYO, at(31)).idle_since == at(31)


# -- the end of day and overtime ------------------------------------------------------------


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
    state = observe(State(), [ClusterInfo(CID, "analytics", "RUNNING", start, start)], start)
    passes = []
    now = start
    while now < start + timedelta(hours=6):
        state, effects = plan_tick(state, policy, now)
        passes += [now for e in effects if isinstance(e, Terminate)]
        if effects and isinstance(effects[-1], Terminate):
            state = terminated(state, CID, now, rule="end_of_day", who=None)
            state = observe(state, [], now)
        now += timedelta(minutes=1)
    # 02:30 does not exist that night: zoneinfo reads it as 03:30 EDT (07:30 UTC).
    assert passes == [datetime(2026, 3, 8, 7, 30, tzinfo=UTC)]


def test_end_of_day_terminates_held_clusters_and_mentions_holders_in_the_warning() -> None:
    state = held_state()
    state, effects = plan_tick(state, TOKYO, EOD - timedelta(minutes=5))
    assert [type(e) for e in effects] == [Warn]
    assert effects[0].deadline.rule == "end_of_day" and [h.name for h in effects[0].cluster.holds] == ["alice"]
    state, effects = plan_tick(state, TOKYO, EOD)
    assert [(type(e), e.rule) for e in effects] == [(Terminate, "end_of_day")]  # type: ignore[union-attr]
    assert state.end_of_day_done == date(2026, 12, 1)


def test_overtime_moves_the_end_of_day_for_that_cluster() -> None:
    state = held_state()
    until, day = overtime_until(TOKYO, state, state.clusters[CID], time(21, 0), at(2))
    assert until == jst(1, 21) and day == date(2026, 12, 1)
    state = set_overtime(state, CID, "U1", "alice", until, day, at(2))
    state, effects = plan_tick(state, TOKYO, EOD)
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
    state = held_state()
    record = state.clusters[CID]
    with pytest.raises(ValueError, match=problem):
        overtime_until(TOKYO, state, record, hhmm, at(1))
    assert overtime_until(TOKYO, state, record, time(1, 0), at(1))[0] == jst(2, 1)
    assert overtime_until(TOKYO, state, record, None, at(1))[0] == jst(1, 21)


def test_overtime_asked_after_midnight_extends_the_same_night() -> None:
    state = held_state()
    state = set_overtime(state, CID, "U1", "alice", jst(2, 1), date(2026, 12, 1), jst(1, 18))
    state, _ = plan_tick(state, TOKYO, jst(1, 19))  # tonight's pass ran; the cluster has overtime
    record = state.clusters[CID]
    until, day = overtime_until(TOKYO, state, record, time(1, 30), jst(2, 0, 40))
    assert (until, day) == (jst(2, 1, 30), date(2026, 12, 1))  # 50 minutes away, not tomorrow night
    state = set_overtime(state, CID, "U1", "alice", until, day, jst(2, 0, 40))
    deadline = next_deadline(state, state.clusters[CID], TOKYO, jst(2, 0, 41))
    assert (deadline.rule, deadline.at) == ("overtime", jst(2, 1, 30))


def test_overtime_can_be_extended_while_it_runs_within_the_bound() -> None:
    state = held_state()
    state = set_overtime(state, CID, "U1", "alice", jst(1, 21), date(2026, 12, 1), jst(1, 18))
    state, _ = plan_tick(state, TOKYO, jst(1, 19))
    until, _ = overtime_until(TOKYO, state, state.clusters[CID], time(23, 0), jst(1, 20, 30))
    assert until == jst(1, 23)
    with pytest.raises(ValueError, match="until 03:00 at the latest"):
        overtime_until(TOKYO, state, state.clusters[CID], time(4, 0), jst(1, 20, 30))


def test_overtime_rescues_a_cluster_doomed_by_the_end_of_day() -> None:
    state = held_state()
    state, effects = plan_tick(state, TOKYO, EOD)
    assert [type(e) for e in effects] == [Terminate]
    state, _ = termination_failed(state, CID, "TerminationProtected", "protected", EOD)
    until, day = overtime_until(TOKYO, state, state.clusters[CID], None, EOD + timedelta(minutes=1))
    state = set_overtime(state, CID, "U1", "alice", until, day, EOD + timedelta(minutes=1))
    assert state.clusters[CID].doomed is None
    state, effects = plan_tick(state, TOKYO, EOD + timedelta(minutes=2))
    assert effects == []


def test_no_overtime_after_tonights_pass_for_a_cluster_without_it() -> None:
    state, _ = plan_tick(State(), TOKYO, EOD)  # tonight's pass ran (no cluster then)
    state = held_state(EOD + timedelta(minutes=20))  # started after the pass
    state = replace(state, end_of_day_done=date(2026, 12, 1))
    with pytest.raises(ValueError, match="tonight's end-of-day pass has already run"):
        overtime_night(TOKYO, state, state.clusters[CID], EOD + timedelta(minutes=30))


def test_overtime_with_no_pass_recorded_yet_does_not_raise_a_programming_error() -> None:
    state = held_state(jst(1, 22))  # the bot started at 22:00: tonight's pass is still to run at its first tick
    until, day = overtime_until(TOKYO, state, state.clusters[CID], None, jst(1, 22))
    assert (until, day) == (jst(2, 0), date(2026, 12, 1))
    with pytest.raises(ValueError, match="21:00 is already past"):
        overtime_until(TOKYO, state, state.clusters[CID], time(21, 0), jst(1, 22))


# -- pending terminations are re-decided ----------------------------------------------------


def test_a_failed_termination_is_announced_once_per_cause_and_retried() -> None:
    state = observe(State(), waiting(), at(0))
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


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ("hold", "someone holds it"),
        ("busy", "it is busy (RUNNING)"),
        ("step", "it did work since"),
    ],
)
def test_a_pending_idle_termination_is_dropped_when_its_reason_goes(change: str, why: str) -> None:
    state = observe(State(), waiting(), at(0))
    state, _ = run(state, 30)
    state, _ = termination_failed(state, CID, "Unreachable", "timeout", at(30))
    cluster_state = "WAITING"
    if change == "hold":  # a hold recorded while the doom stands (a restored state, say): the doom goes
        record = state.clusters[CID]
        state = state.with_cluster(replace(record, holds=(Hold("U1", "alice", at(31)),)))
    elif change == "busy":
        cluster_state = "RUNNING"
    else:
        state = steps_seen(state, CID, at(29), running=False, now=at(31))
    state, effects = run(state, 32, cluster_state=cluster_state)
    assert [type(e) for e in effects] == [Cancelled] and effects[0].why == why
    assert state.clusters[CID].doomed is None and state.history[-1].kind == "cancelled"


def test_a_pending_end_of_day_termination_is_dropped_when_the_night_is_over() -> None:
    state = held_state()
    state, _ = plan_tick(state, TOKYO, EOD)
    state, _ = termination_failed(state, CID, "TerminationProtected", "protected", EOD)
    state, effects = plan_tick(state, TOKYO, jst(2, 2, 59))  # still that night: retried
    assert [type(e) for e in effects] == [Terminate]
    state, effects = plan_tick(state, TOKYO, jst(2, 9))  # tomorrow's morning is not tonight's end of day
    assert [type(e) for e in effects] == [Cancelled] and effects[0].why == "that working night is over"
    state, effects = plan_tick(state, TOKYO, jst(2, 9, 1))
    assert effects == []


def test_the_missed_pass_of_yesterday_does_not_run_today() -> None:
    state = held_state()
    after_midnight = jst(2, 0, 10)
    state, effects = plan_tick(state, TOKYO, after_midnight)
    assert effects == []
    assert next_deadline(state, state.clusters[CID], TOKYO, after_midnight).at == jst(2, 19)


def test_a_cluster_started_after_the_pass_is_left_to_the_idle_rule_until_tomorrow() -> None:
    state, _ = plan_tick(State(), TOKYO, EOD)  # the pass runs (no cluster)
    late = EOD + timedelta(minutes=20)
    state = observe(state, [ClusterInfo(CID, "late", "WAITING", late, late)], late)
    state = add_hold(state, CID, "U1", "alice", "", late)
    state, effects = plan_tick(state, TOKYO, late + timedelta(hours=1))
    assert effects == []
    deadline = next_deadline(state, state.clusters[CID], TOKYO, late)
    assert (deadline.rule, deadline.at) == ("end_of_day", jst(2, 19))


@pytest.mark.parametrize(
    ("fresh_state", "managed", "expect", "refusal"),
    [
        ("WAITING", True, {"WAITING"}, None),
        ("RUNNING", True, {"WAITING"}, "it is RUNNING now (was WAITING)"),
        ("RUNNING", True, {"WAITING", "RUNNING"}, None),
        ("WAITING", False, {"WAITING"}, "it no longer carries the managed tag"),
        ("TERMINATING", True, {"WAITING"}, "it is already TERMINATING"),
        ("TERMINATED", False, {"WAITING"}, "it is already TERMINATED"),
    ],
)
def test_a_termination_goes_ahead_only_if_aws_still_shows_what_it_was_decided_on(
    fresh_state: str, managed: bool, expect: set[str], refusal: str | None
) -> None:
    record = observe(State(), waiting(), at(0)).clusters[CID]
    fresh = ClusterInfo(CID, "analytics", fresh_state, managed=managed)
    assert termination_refusal(record, fresh, expect) == refusal


# -- the state: absence proves nothing ------------------------------------------------------


def test_a_cluster_missing_from_one_listing_keeps_its_record_and_holds() -> None:
    state = held_state(cluster_state="WAITING")
    state = observe(state, [], at(2))  # a stale listing, a wrong CLUSTER_TAG for a while, …
    record = state.clusters[CID]
    assert (record.absent, record.unseen_since, [h.name for h in record.holds]) == (UNSEEN, at(2), ["alice"])
    state, effects = plan_tick(state, TOKYO, EOD + timedelta(minutes=1))
    assert effects == []  # never acted on while unseen
    state = observe(state, waiting(), at(3))
    assert state.clusters[CID].listed and [h.name for h in state.clusters[CID].holds] == ["alice"]


def test_only_aws_saying_it_ended_removes_a_cluster() -> None:
    state = held_state(cluster_state="WAITING")
    state = observe(state, [], at(2))
    assert to_recheck(state, {}, at(2)) == [CID]
    assert to_recheck(state, {CID: at(2)}, at(6)) == []  # re-read every five minutes, not every tick
    assert to_recheck(state, {CID: at(2)}, at(7)) == [CID]
    state, settled = settle(state, ClusterInfo(CID, "analytics", "WAITING", managed=True), at(3))
    assert settled.kind == "unchanged" and CID in state.clusters
    state, settled = settle(
        state, ClusterInfo(CID, "analytics", "TERMINATED", managed=True, reason="User request"), at(4)
    )
    assert settled.kind == "ended" and state.clusters == {}
    assert [h.name for h in settled.record.holds] == ["alice"]
    event = state.history[-1]
    assert (event.kind, event.detail) == ("ended", "outside the bot (User request); holders: alice")


def test_an_untagged_cluster_keeps_its_holds_is_never_terminated_and_comes_back_with_a_fresh_clock() -> None:
    state = held_state(cluster_state="WAITING")
    state = observe(state, [], at(2))
    state, settled = settle(state, ClusterInfo(CID, "analytics", "WAITING", managed=False), at(3))
    assert settled.kind == "unmanaged" and state.clusters[CID].absent == UNMANAGED
    state, again = settle(state, ClusterInfo(CID, "analytics", "WAITING", managed=False), at(8))
    assert again.kind == "unchanged"  # announced once
    state = drop_hold(state, CID, "U1", at(9))
    state, effects = plan_tick(state, TOKYO, at(200))
    assert effects == []
    state = observe(state, waiting(), at(300))  # tagged again
    record = state.clusters[CID]
    assert record.listed and next_deadline(state, record, TOKYO, at(300)).idle_since == at(300)
    assert state.history[-1].kind == "managed"


def test_a_terminated_cluster_is_not_resurrected_by_a_listing_taken_before() -> None:
    state = held_state(cluster_state="WAITING")
    state = terminated(state, CID, at(5), rule=None, who="alice")
    assert not state.clusters[CID].listed and state.clusters[CID].holds == ()
    state = observe(state, waiting(), at(6))  # listed before the termination, folded after
    assert not state.clusters[CID].listed
    state, settled = settle(state, ClusterInfo(CID, "analytics", "TERMINATING"), at(7))
    assert settled.kind == "ended" and state.clusters == {}
    assert [e.kind for e in state.history][-1] == "terminated"  # said once, by whom it was


def test_remembered_clusters_are_bounded() -> None:
    state = State()
    for i in range(RECORD_LIMIT + 50):
        state = observe(state, [ClusterInfo(f"j-{i:013d}", f"c{i}", "WAITING")], at(i))
    assert len(state.clusters) == RECORD_LIMIT
    assert f"j-{RECORD_LIMIT + 49:013d}" in state.clusters


def test_state_round_trips_through_plain_data() -> None:
    state = observe(State(), waiting(), at(0))
    state = add_hold(state, CID, "U1", "alice", "解析 🚀", at(1))
    until, day = overtime_until(TOKYO, state, state.clusters[CID], time(20, 0), at(2))
    state = set_overtime(state, CID, "U1", "alice", until, day, at(2))
    state, _ = run(state, 3)
    state = observe(state, [], at(4))
    assert State.from_dict(state.to_dict()) == state
    with pytest.raises(ValueError, match="unsupported state version"):
        State.from_dict({"version": 0})


def test_a_part_one_state_is_migrated_and_a_newer_one_refused() -> None:
    v1 = {
        "version": 1,
        "clusters": {
            CID: {
                "name": "analytics",
                "state": "WAITING",
                "first_seen": at(0).isoformat(),
                "ready_at": None,
                "waiting_since": None,
                "last_release": None,
                "holds": [{"user": "U1", "name": "alice", "since": at(1).isoformat(), "reason": "q"}],
                "warned": [],
                "overtime": None,
                "doomed": {"rule": "end_of_day", "since": EOD.isoformat(), "failure": "AccessDenied"},
            }
        },
        "end_of_day_done": "2026-12-01",
        "gone": ["j-OLD0000000001"],
        "history": [],
    }
    state = State.from_dict(v1)
    record = state.clusters[CID]
    assert record.listed and [h.reason for h in record.holds] == ["q"] and record.doomed.day is None
    assert "gone" not in state.to_dict()
    _, effects = plan_tick(state, TOKYO, EOD + timedelta(minutes=1))  # a v1 doom still knows its night
    assert [type(e) for e in effects] == [Terminate]
    with pytest.raises(ValueError, match="newer than this code reads"):
        migrate({"version": STATE_VERSION + 1})


def test_history_is_bounded_in_storage() -> None:
    state = observe(State(), waiting(), at(0))
    for i in range(HISTORY_LIMIT + 50):
        state = add_hold(state, CID, f"U{i}", f"user{i}", "", at(i / 100))
    assert len(state.history) == HISTORY_LIMIT
    assert state.history[-1].who == f"user{HISTORY_LIMIT + 49}"
    assert len(State.from_dict(state.to_dict()).history) == HISTORY_LIMIT


# -- invariants (Hypothesis) ------------------------------------------------------------------

steps = st.lists(
    st.one_of(
        st.tuples(st.just("list"), st.booleans(), st.sampled_from(["WAITING", "RUNNING"])),
        st.tuples(st.just("settle"), st.sampled_from(["WAITING", "TERMINATED"]), st.booleans()),
        st.tuples(st.just("hold"), st.sampled_from(["U1", "U2"]), st.none()),
        st.tuples(st.just("release"), st.sampled_from(["U1", "U2"]), st.none()),
        st.tuples(st.just("tick"), st.integers(1, 180), st.none()),
    ),
    max_size=30,
)


@settings(max_examples=300, deadline=None, database=None)
@given(steps=steps)
def test_holds_survive_until_aws_says_the_cluster_ended_and_unseen_clusters_are_never_doomed(steps: list) -> None:
    policy = Policy(remind_minutes=None)  # reminders may end holds: see the activity invariants below
    state = observe(State(), waiting(), at(0))
    now = at(0)
    acknowledged: set[str] = set()
    for kind, a, b in steps:
        now += timedelta(minutes=1)
        record = state.clusters.get(CID)
        if kind == "list":
            state = observe(state, waiting(b) if a else [], now)
        elif kind == "settle":
            state, _ = settle(state, ClusterInfo(CID, "analytics", a, managed=b), now)
            if a == "TERMINATED":
                acknowledged.clear()
        elif kind == "hold" and record is not None and record.listed:
            state = add_hold(state, CID, a, a, "", now)
            acknowledged.add(a)
        elif kind == "release" and record is not None and record.listed:
            state = drop_hold(state, CID, a, now)
            acknowledged.discard(a)
        elif kind == "tick":
            now += timedelta(minutes=a)
            state, effects = plan_tick(state, policy, now)
            for effect in effects:
                if isinstance(effect, Terminate):
                    assert effect.cluster.listed, "a cluster the latest listing did not show was doomed"
                    if effect.rule == "idle":
                        assert not effect.cluster.holds, "the idle rule doomed a held cluster"
                    state = terminated(state, CID, now, rule=effect.rule, who=None)
                    acknowledged.clear()
        record = state.clusters.get(CID)
        held = {h.user for h in record.holds} if record else set()
        assert acknowledged <= held, "an acknowledged hold was lost"


# -- activity (IsIdle) and hold reminders --------------------------------------------------------


def reading(minute: float, *, busy: bool, work_ended: float | None = None) -> Activity:
    return Activity(at(minute), busy, at(work_ended) if work_ended is not None else None)


def test_yarn_work_on_a_waiting_cluster_keeps_it_and_idle_counts_from_the_end_of_the_work() -> None:
    state = observe(State(), waiting(), at(0))
    for minute in range(0, 46, 5):  # IsIdle = 0 for 45 minutes: a Spark shell, no lock
        state = activity_seen(state, {CID: reading(minute, busy=True, work_ended=minute + 5)}, at(minute + 1))
        state, effects = plan_tick(state, TOKYO, at(minute + 1))
        assert effects == []
    state = activity_seen(state, {CID: reading(50, busy=False, work_ended=50)}, at(51))
    deadline = next_deadline(state, state.clusters[CID], TOKYO, at(51))
    assert (deadline.rule, deadline.idle_since, deadline.at) == ("idle", at(50), at(80))
    state, effects = plan_tick(state, TOKYO, at(79))
    assert not [e for e in effects if isinstance(e, Terminate)]
    state, effects = plan_tick(state, TOKYO, at(80))
    assert [type(e) for e in effects] == [Terminate]


@pytest.mark.parametrize(
    ("readings", "why"),
    [
        ({}, "ACTIVITY=off"),
        ({CID: None}, "no datapoint"),
        ({CID: Activity(at(-30), True, at(-25))}, "a stale datapoint"),
    ],
)
def test_without_a_fresh_datapoint_the_idle_rule_goes_by_the_cluster_state(readings: dict, why: str) -> None:
    state = observe(State(), waiting(), at(0))
    state = activity_seen(state, readings, at(0))
    assert state.clusters[CID].activity == "", why
    state, effects = plan_tick(state, TOKYO, at(30))
    assert [type(e) for e in effects] == [Terminate], why


def test_a_busy_reading_that_goes_stale_stops_keeping_the_cluster() -> None:
    state = observe(State(), waiting(), at(0))
    state = activity_seen(state, {CID: reading(0, busy=True, work_ended=5)}, at(1))
    assert activity_unknown(state, at(10)) == state
    state = activity_unknown(state, at(16))  # CloudWatch unreadable for three periods
    assert state.clusters[CID].activity == ""
    deadline = next_deadline(state, state.clusters[CID], TOKYO, at(16))
    assert deadline.idle_since == at(5)


def test_a_pending_idle_termination_is_dropped_when_yarn_work_starts() -> None:
    state = observe(State(), waiting(), at(0))
    state, _ = run(state, 30)
    state, _ = termination_failed(state, CID, "Unreachable", "timeout", at(30))
    state = activity_seen(state, {CID: reading(30, busy=True, work_ended=35)}, at(31))
    state, effects = plan_tick(state, TOKYO, at(31))
    assert [type(e) for e in effects] == [Cancelled] and effects[0].why == "it is busy (YARN work)"


def test_a_forgotten_hold_is_questioned_then_ends_and_the_idle_clock_starts_then() -> None:
    state = held_state(at(0), cluster_state="WAITING")
    state, effects = plan_tick(state, TOKYO, at(119))
    assert effects == []
    state, effects = plan_tick(state, TOKYO, at(120))
    assert [type(e) for e in effects] == [Remind]
    assert (effects[0].hold.name, effects[0].ends_at, effects[0].quiet_since) == ("alice", at(135), at(0))
    state, effects = plan_tick(state, TOKYO, at(121))
    assert effects == []  # once per hold and confirmation
    state, effects = plan_tick(state, TOKYO, at(135))
    assert [type(e) for e in effects] == [Expire] and state.clusters[CID].holds == ()
    assert [e.kind for e in state.history][-2:] == ["reminder", "expired"]
    deadline = next_deadline(state, state.clusters[CID], TOKYO, at(135))
    assert (deadline.idle_since, deadline.at) == (at(135), at(165))


def test_a_confirmation_keeps_the_hold_and_its_reason() -> None:
    state = observe(State(), waiting(), at(0))
    state = add_hold(state, CID, "U1", "alice", "nightly report", at(0))
    state, effects = plan_tick(state, TOKYO, at(120))
    assert [type(e) for e in effects] == [Remind]
    state = add_hold(state, CID, "U1", "alice", "", at(130))  # `!emr lock` by the holder
    hold = state.clusters[CID].holds[0]
    assert (hold.reason, hold.since, hold.confirmed, hold.reminded_at) == ("nightly report", at(0), at(130), None)
    state, effects = plan_tick(state, TOKYO, at(200))
    assert effects == []
    state, effects = plan_tick(state, TOKYO, at(250))
    assert [type(e) for e in effects] == [Remind]  # 120 minutes after the confirmation


def test_work_on_the_cluster_means_no_reminder_and_withdraws_a_pending_one() -> None:
    state = held_state(at(0), cluster_state="WAITING")
    state = activity_seen(state, {CID: reading(60, busy=True, work_ended=65)}, at(61))
    state = activity_seen(state, {CID: reading(65, busy=False, work_ended=65)}, at(66))
    state, effects = plan_tick(state, TOKYO, at(120))
    assert effects == []  # it worked until 11:05: no reminder before 13:05
    state, effects = plan_tick(state, TOKYO, at(185))
    assert [type(e) for e in effects] == [Remind] and effects[0].quiet_since == at(65)
    state = observe(state, waiting("RUNNING"), at(190))  # a step starts before the deadline
    state, effects = plan_tick(state, TOKYO, at(200))
    assert effects == [] and state.clusters[CID].holds[0].reminded_at is None


def test_two_holders_are_each_reminded_of_their_own_hold() -> None:
    state = held_state(at(0), cluster_state="WAITING")
    state = add_hold(state, CID, "U2", "bob", "", at(30))
    state, effects = plan_tick(state, TOKYO, at(120))
    assert [(type(e), e.hold.name) for e in effects] == [(Remind, "alice")]
    state, effects = plan_tick(state, TOKYO, at(135))
    assert [(type(e), e.hold.name) for e in effects] == [(Expire, "alice")]
    assert state.clusters[CID].last_release is None  # bob still holds it
    state, effects = plan_tick(state, TOKYO, at(150))
    assert [(type(e), e.hold.name) for e in effects] == [(Remind, "bob")]


def test_reminders_can_be_switched_off() -> None:
    state = held_state(at(0), cluster_state="WAITING")
    state, effects = plan_tick(state, Policy(remind_minutes=None), at(480))  # 18:00, before the end of day
    assert effects == []


def test_a_part_two_state_is_migrated_from_a_stored_copy() -> None:
    stored = json.loads((Path(__file__).parent / "fixtures" / "state-v2.json").read_text())
    assert stored["version"] == 2
    state = State.from_dict(stored)
    assert state.to_dict()["version"] == STATE_VERSION == 5
    alice = state.clusters["j-ANALYTICS0001"].holds[0]
    assert (alice.name, alice.reason, alice.confirmed_at, alice.reminded_at) == (
        "alice",
        "spark job on logs",
        alice.since,
        None,
    )
    assert state.clusters["j-LOGANALYSIS01"].absent == UNSEEN
    assert state.clusters["j-OLDCLUSTER001"].ending is not None
    analytics = state.clusters["j-ANALYTICS0001"]  # v4: nothing started by the bot, the backstop not set yet
    assert (analytics.template, analytics.start, analytics.backstop, analytics.backstop_failure) == ("", None, None, "")
    assert State.from_dict(state.to_dict()) == state


def test_a_version_3_state_is_migrated_to_4_with_nothing_started_and_the_backstop_unknown() -> None:
    stored = json.loads((Path(__file__).parent / "fixtures" / "state-v2.json").read_text())
    v3 = {**State.from_dict(stored).to_dict(), "version": 3}
    for record in v3["clusters"].values():  # exactly what version 3 wrote: no v4 field
        for key in ("template", "start", "backstop", "backstop_failure"):
            del record[key]
    state = State.from_dict(v3)
    assert state.to_dict()["version"] == STATE_VERSION
    assert all(r.start is None and r.backstop is None and r.template == "" for r in state.clusters.values())
    assert State.from_dict(state.to_dict()) == state
    # The poller then sets the backstop once on each unheld listed cluster, and removes none from held ones.
    due = backstop_due(state, 10800, at(0), {})
    assert ("j-ANALYTICS0001", 0) in due  # held by alice and bob: "no policy" is what EMR must hold


def test_a_version_4_state_belongs_to_the_one_target_it_served() -> None:
    """State written before targets (tests/fixtures/state-v4.json, by the v4 code) is the configured
    target's, in its region: records and history say so, and nothing else changes."""
    stored = json.loads((Path(__file__).parent / "fixtures" / "state-v4.json").read_text())
    assert stored["version"] == 4 and "target" not in stored["clusters"]["j-ANALYTICS0001"]
    state = State.from_dict(stored, ("game-a", "ap-northeast-1"))
    assert state.to_dict()["version"] == 5
    assert {(r.target, r.region) for r in state.clusters.values()} == {("game-a", "ap-northeast-1")}
    assert state.history and all(e.target == "game-a" for e in state.history)
    v4_again = state.to_dict()
    for record in v4_again["clusters"].values():
        del record["target"], record["region"]
    for event in v4_again["history"]:
        del event["target"]
    assert {**v4_again, "version": 4} == stored  # nothing but the target and region was added
    assert State.from_dict(state.to_dict()) == state


readings_or_steps = st.lists(
    st.one_of(
        st.tuples(st.just("reading"), st.booleans(), st.integers(0, 20)),
        st.tuples(st.just("lock"), st.sampled_from(["U1", "U2"]), st.none()),
        st.tuples(st.just("unlock"), st.sampled_from(["U1", "U2"]), st.none()),
        st.tuples(st.just("tick"), st.integers(1, 60), st.none()),
    ),
    max_size=40,
)


@settings(max_examples=300, deadline=None, database=None)
@given(steps=readings_or_steps)
def test_yarn_work_is_never_idle_and_a_hold_confirmed_within_the_window_never_expires(steps: list) -> None:
    policy = Policy(end_of_day=None, remind_minutes=60, grace_minutes=15)
    state = observe(State(), waiting(), at(0))
    now = at(0)
    confirmed: dict[str, datetime] = {}
    for kind, a, b in steps:
        now += timedelta(minutes=1)
        if kind == "reading":
            latest = now - timedelta(minutes=b % 5)
            state = activity_seen(state, {CID: Activity(latest, a, latest + timedelta(minutes=5) if a else None)}, now)
        elif kind == "lock":
            state = add_hold(state, CID, a, a, "", now)
            confirmed[a] = now
        elif kind == "unlock":
            state = drop_hold(state, CID, a, now)
            confirmed.pop(a, None)
        else:
            now += timedelta(minutes=a)
            state, effects = plan_tick(state, policy, now)
            record = state.clusters[CID]
            for effect in effects:
                if isinstance(effect, Terminate) and effect.rule == "idle":
                    assert record.activity != "busy", "the idle rule terminated a cluster with YARN work"
                    state = observe(State(), waiting(), now)  # a new cluster, a new life
                    confirmed.clear()
                if isinstance(effect, Expire):
                    user = effect.hold.user
                    assert now - confirmed[user] >= policy.remind + policy.grace, "a confirmed hold expired early"
                    confirmed.pop(user)


def test_asking_for_overtime_confirms_the_askers_hold() -> None:
    state = held_state(at(0), cluster_state="WAITING")
    state, effects = plan_tick(state, TOKYO, at(120))
    assert [type(e) for e in effects] == [Remind]
    until, day = overtime_until(TOKYO, state, state.clusters[CID], None, at(125))
    state = set_overtime(state, CID, "U1", "alice", until, day, at(125))
    hold = state.clusters[CID].holds[0]
    assert (hold.confirmed, hold.reminded_at) == (at(125), None)
    state, effects = plan_tick(state, TOKYO, at(140))
    assert effects == []  # no expiry


# -- starting a cluster (DESIGN §12) ----------------------------------------------------------------

NEW = "j-NEWCLUSTER001"


def started_state(at_minute: float = 0, backstop: int | None = 10800) -> State:
    state = observe(State(), waiting(), at(at_minute))
    return started(state, NEW, "adhoc", "adhoc", "U1", "alice", "", at(at_minute), backstop=backstop)


def listing(state_name: str, ready: datetime | None = None) -> list[ClusterInfo]:
    return [*waiting(), ClusterInfo(NEW, "adhoc", state_name, created_at=at(0), ready_at=ready, template="adhoc")]


def test_a_started_cluster_is_held_by_its_starter_at_once_with_the_default_reason() -> None:
    state = started_state()
    record = state.clusters[NEW]
    assert [(h.user, h.reason) for h in record.holds] == [("U1", "started it")]
    assert (record.state, record.template, record.start.by, record.backstop) == ("STARTING", "adhoc", "U1", 10800)
    assert [e.kind for e in state.history[-2:]] == ["start", "hold"]
    assert (
        started(State(), NEW, "adhoc", "adhoc", "U1", "alice", "etl backfill", at(0), backstop=None)
        .clusters[NEW]
        .holds[0]
        .reason
        == "etl backfill"
    )


def test_a_started_cluster_is_announced_ready_once_with_the_time_it_took() -> None:
    state = started_state()
    for minute, name in ((2, "STARTING"), (4, "BOOTSTRAPPING")):
        state = observe(state, listing(name), at(minute))
        state, effects = plan_tick(state, TOKYO, at(minute))
        assert not [e for e in effects if isinstance(e, Ready)], name
    state = observe(state, listing("WAITING", ready=at(7.2)), at(8))
    state, effects = plan_tick(state, TOKYO, at(8))
    [ready] = [e for e in effects if isinstance(e, Ready)]
    assert ready.took == timedelta(minutes=7.2) and ready.cluster.start.notified
    assert state.history[-1].kind == "ready" and state.history[-1].detail == "432"
    state, effects = plan_tick(State.from_dict(state.to_dict()), TOKYO, at(9))  # a restart in between
    assert not [e for e in effects if isinstance(e, Ready)]


def test_a_started_cluster_with_a_first_step_is_ready_when_running() -> None:
    state = observe(started_state(), listing("RUNNING", ready=at(6)), at(6.5))
    _, effects = plan_tick(state, TOKYO, at(6.5))
    assert [type(e) for e in effects] == [Ready]


def test_a_failed_start_is_settled_once_with_emr_s_reason() -> None:
    state = observe(started_state(), waiting(), at(3))  # it left the active listing
    assert state.clusters[NEW].absent == UNSEEN
    failed = ClusterInfo(NEW, "adhoc", "TERMINATED_WITH_ERRORS", reason="Bootstrap failure: install.sh exited 1")
    state, settled = settle(state, failed, at(3))
    assert settled.kind == "start_failed" and settled.record.start.by == "U1"
    assert NEW not in state.clusters
    event = state.history[-1]
    assert (event.kind, event.who, event.detail) == (
        "start_failed",
        "alice",
        "Bootstrap failure: install.sh exited 1 (TERMINATED_WITH_ERRORS)",
    )
    again, settled = settle(state, failed, at(4))  # a second re-read finds nothing to say
    assert settled.kind == "unchanged" and again == state


def test_a_ready_cluster_that_ends_later_is_an_ordinary_end_not_a_failed_start() -> None:
    state = observe(started_state(), listing("WAITING", ready=at(5)), at(5))
    state, _ = plan_tick(state, TOKYO, at(5))
    state = observe(state, waiting(), at(60))
    _, settled = settle(state, ClusterInfo(NEW, "adhoc", "TERMINATED", reason="User request"), at(60))
    assert settled.kind == "ended"


def test_a_cluster_terminated_by_the_bot_while_starting_is_no_failed_start() -> None:
    state = terminated(started_state(), NEW, at(1), rule=None, who="alice")
    _, settled = settle(state, ClusterInfo(NEW, "adhoc", "TERMINATED", reason="User request"), at(2))
    assert settled.kind == "ended"


def test_a_cluster_started_after_the_end_of_day_is_left_to_the_idle_rule_tonight() -> None:
    evening = EOD + timedelta(minutes=10)  # 19:10, the pass still to run (or run already: both)
    assert after_end_of_day(TOKYO, evening) and not after_end_of_day(TOKYO, EOD - timedelta(minutes=1))
    assert not after_end_of_day(Policy(end_of_day=None), evening)
    state = observe(State(), waiting(), at(0))  # analytics, unheld since 10:00
    state = started(state, NEW, "adhoc", "adhoc", "U1", "alice", "", evening, backstop=None)
    state = observe(state, listing("WAITING", ready=evening), evening)
    deadline = next_deadline(state, state.clusters[NEW], TOKYO, evening)
    assert deadline is not None and deadline.rule == "end_of_day" and deadline.at == EOD + timedelta(days=1)
    state, effects = plan_tick(state, TOKYO, evening + timedelta(seconds=30))
    doomed = {e.cluster.id for e in effects if isinstance(e, Terminate)}
    assert doomed == {CID}  # tonight's pass takes the old cluster, not the one started after 19:00
    state = drop_hold(state, NEW, "U1", evening + timedelta(minutes=5))
    deadline = next_deadline(state, state.clusters[NEW], TOKYO, evening + timedelta(minutes=5))
    assert deadline is not None and deadline.rule == "idle"  # unheld: the idle rule, tonight
    # Started before 19:00, it is tonight's like any other.
    early = started(
        observe(State(), [], at(0)), NEW, "adhoc", "adhoc", "U1", "alice", "", EOD - timedelta(hours=1), backstop=None
    )
    deadline = next_deadline(early, early.clusters[NEW], TOKYO, EOD - timedelta(minutes=30))
    assert deadline is not None and deadline.at == EOD


# -- the backstop: EMR's AutoTerminationPolicy follows the holds --------------------------------------

HOUR3 = 10800


@pytest.mark.parametrize(
    ("holds", "backstop", "failure", "tried_ago", "only", "due"),
    [
        (False, None, "", None, None, [(CID, HOUR3)]),  # first seen, unheld: put it on
        (True, None, "", None, None, [(CID, 0)]),  # first seen, held: take it off
        (False, HOUR3, "", None, None, []),  # as it should be
        (True, 0, "", None, None, []),
        (True, HOUR3, "", 0.5, None, [(CID, 0)]),  # first hold: remove at once
        (False, 0, "", 0.5, None, [(CID, HOUR3)]),  # last release: put back at once
        (False, 3600, "", None, None, [(CID, HOUR3)]),  # BACKSTOP_MINUTES changed: put the new one
        (False, 0, "AccessDenied", 1, None, []),  # failed a minute ago: the poller waits
        (False, 0, "AccessDenied", 5, None, [(CID, HOUR3)]),  # five minutes on: it tries again
        (False, 0, "AccessDenied", 1, CID, [(CID, HOUR3)]),  # a command on the cluster tries at once
        (False, 0, "AccessDenied", None, None, [(CID, HOUR3)]),  # after a restart: at once
        (False, None, "", None, "j-OTHER", []),  # a command on another cluster
    ],
)
def test_which_clusters_backstop_must_change(
    holds: bool, backstop: int | None, failure: str, tried_ago: float | None, only: str | None, due: list
) -> None:
    state = observe(State(), waiting(), at(0))
    if holds:
        state = add_hold(state, CID, "U1", "alice", "", at(0))
    state = state.with_cluster(replace(state.clusters[CID], backstop=backstop, backstop_failure=failure))
    tried = {} if tried_ago is None else {CID: at(10 - tried_ago)}
    assert backstop_due(state, HOUR3, at(10), tried, only) == due


def test_an_unlisted_or_ending_cluster_s_backstop_is_left_alone() -> None:
    state = observe(observe(State(), waiting(), at(0)), [], at(1))  # unseen
    assert backstop_due(state, HOUR3, at(2), {}) == []
    state = terminated(observe(State(), waiting(), at(0)), CID, at(1), rule="idle", who=None)
    assert backstop_due(state, HOUR3, at(2), {}) == []


def test_a_backstop_failure_is_new_once_per_code_and_a_success_says_it_recovered() -> None:
    state = observe(State(), waiting(), at(0))
    state, new = backstop_failed(state, CID, "AccessDenied")
    assert new and state.clusters[CID].backstop_failure == "AccessDenied"
    state, new = backstop_failed(state, CID, "AccessDenied")
    assert not new
    state, new = backstop_failed(state, CID, "Unreachable")
    assert new
    state, recovered = backstop_set(state, CID, HOUR3)
    assert recovered and (state.clusters[CID].backstop, state.clusters[CID].backstop_failure) == (HOUR3, "")
    state, recovered = backstop_set(state, CID, 0)
    assert not recovered
    assert backstop_failed(state, "j-GONE", "x") == (state, False) and backstop_set(state, "j-GONE", 1) == (
        state,
        False,
    )


holds_and_faults = st.lists(
    st.tuples(st.sampled_from(["lock", "unlock", "sync"]), st.sampled_from(["U1", "U2"]), st.booleans()),
    max_size=30,
)


@settings(max_examples=200, deadline=None, database=None)
@given(steps=holds_and_faults)
def test_once_aws_answers_emr_s_policy_matches_the_holds_and_each_failure_is_announced_once(steps: list) -> None:
    """EMR's policy (as AWS holds it) after the syncs: a held cluster none, an unheld one the backstop."""
    state = observe(State(), waiting(), at(0))
    emr: int | None = None  # what AWS holds: None none
    announced: list[str] = []
    now = at(0)
    tried: dict[str, datetime] = {}

    def sync(fails: bool, only: str | None = None) -> None:
        nonlocal state, emr
        for cluster_id, wanted in backstop_due(state, HOUR3, now, tried, only):
            tried[cluster_id] = now
            if fails:
                state, new = backstop_failed(state, cluster_id, "Unreachable")
                announced.extend(["failed"] if new else [])
            else:
                emr = wanted or None
                state, recovered = backstop_set(state, cluster_id, wanted)
                announced.extend(["back"] if recovered else [])

    for kind, user, fails in steps:
        now += timedelta(minutes=3)
        if kind == "lock":
            state = add_hold(state, CID, user, user, "", now)
            sync(fails, CID)
        elif kind == "unlock":
            state = drop_hold(state, CID, user, now)
            sync(fails, CID)
        else:
            sync(fails)
    assert all(a != b for a, b in itertools.pairwise(announced)), "a failure announced twice in a row"
    now += timedelta(minutes=5)
    sync(False)
    held = bool(state.clusters[CID].holds)
    assert emr == (None if held else HOUR3)


def test_a_listing_asked_for_before_a_start_does_not_make_the_new_cluster_unseen() -> None:
    state = started(observe(State(), waiting(), at(0)), NEW, "adhoc", "adhoc", "U1", "alice", "", at(1), backstop=None)
    stale = observe(state, waiting(), at(1.01), listed_since=at(0.99))  # asked for before RunJobFlow answered
    assert stale.clusters[NEW].listed
    later = observe(state, waiting(), at(2), listed_since=at(1.5))  # asked for after it: absence counts
    assert later.clusters[NEW].absent == UNSEEN


def test_a_busy_reading_keeps_the_cluster_even_when_the_idle_time_is_short() -> None:
    policy = Policy(idle_minutes=5, warn_minutes=1)
    state = observe(State(), waiting(), at(0))
    state = activity_seen(state, {CID: reading(20, busy=True, work_ended=25)}, at(34))  # read 14 minutes after
    state, effects = plan_tick(state, policy, at(34))
    assert not [e for e in effects if isinstance(e, Terminate)]  # the latest datapoint says work runs
