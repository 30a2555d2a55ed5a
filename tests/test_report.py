"""What it costs, end to end (DESIGN §13): cost in `!emr status`, the usage ledger, `!emr report`.

The real plugin on Errbot's test backend, moto's server for AWS (the seeded analytics cluster runs
3 × m5.xlarge in ap-northeast-1, created at 10:00 JST), moved time. A restart is a real stop and
start of the bot on the same storage; a ``kill -9`` is a copy of the SQLite storage taken while
the bot runs (what a killed process leaves: every committed write, nothing after), on which a
new bot starts.
"""

from __future__ import annotations

import re
import shutil
import threading
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from conftest import MORNING, Chat, Clock, emr_config
from demo.emulator import Emulator, Seeded
from emrchatops.domain.ledger import resize_check_due


def at(hh: int, mm: int = 0) -> datetime:
    """That time of the test day (JST); MORNING is 10:00."""
    return MORNING + timedelta(hours=hh - 10, minutes=mm)


def run(chat: Chat, clock: Clock, start: datetime, end: datetime, every: timedelta = timedelta(minutes=1)) -> None:
    """Tick the poller every minute from *start* to *end* (both included)."""
    moment = start
    while moment <= end:
        clock.set(moment)
        chat.tick()
        moment += every


def today_row(report: str) -> str:
    [row] = [line for line in report.splitlines() if line.startswith("12-01 Tue")]
    return row


def test_status_shows_a_cost_that_grows_with_time_and_asks_aws_nothing_more(
    chat: Chat, emulator: Emulator, clock: Clock
) -> None:
    # The shipped table's prices are estimates (DESIGN §19): the cost says so.
    assert "cost: ≈ $0.00 so far (estimated prices; 3 × m5.xlarge, 0m)" in chat.say("!emr status")
    chat.say("!emr lock")  # held: no idle termination meanwhile
    run(chat, clock, at(10, 1), at(11, 0))  # the poller every minute
    reads = emulator.count("ListInstanceGroups")
    assert reads <= 1 + 12  # read when first seen, then once per 5 minutes (a resize), not at every tick
    clock.set(at(11))
    assert "cost: ≈ $0.93 so far (estimated prices; 3 × m5.xlarge, 1h 00m)" in chat.say("!emr status")  # 3 × ($0.31)
    clock.set(at(14, 10))
    assert "cost: ≈ $3.88 so far (estimated prices; 3 × m5.xlarge, 4h 10m)" in chat.say(
        "!emr status"
    )  # × 4h 10m = $3.875
    assert emulator.count("ListInstanceGroups") == reads  # a status asks nothing for the cost


def a_quiet_slot(cluster_id: str, after: datetime) -> datetime:
    """The first second of the cluster's next 5-minute resize-check slot: no periodic re-read is due for 5 minutes."""
    moment = after
    while not resize_check_due(cluster_id, moment, moment + timedelta(seconds=1), False):
        moment += timedelta(seconds=1)
    return moment + timedelta(seconds=1)


def test_a_state_change_reads_the_instances_again(chat: Chat, emulator: Emulator, seeded: Seeded, clock: Clock) -> None:
    chat.say("!emr lock")
    clock.set(a_quiet_slot(seeded.managed_id, clock.now))
    chat.tick()
    assert emulator.count("ListInstanceGroups") == 1
    emulator.set_cluster_state(seeded.managed_id, "RUNNING")  # a step runs: the cluster may have been resized
    clock.advance(minutes=1)
    chat.tick()
    assert emulator.count("ListInstanceGroups") == 2  # at once, not at the next 5-minute check
    clock.advance(minutes=1)
    chat.tick()
    assert emulator.count("ListInstanceGroups") == 2


def dollars_so_far(status: str) -> float:
    match = re.search(r"cost: ≈ \$(\d+\.\d\d) so far", status)
    assert match, status
    return float(match.group(1))


def test_a_resized_cluster_is_priced_with_its_new_composition_from_the_resize_on(
    chat: Chat, emulator: Emulator, seeded: Seeded, clock: Clock
) -> None:
    chat.say("!emr lock")  # held: WAITING all along
    run(chat, clock, at(10), at(10, 30))
    emulator.resize(seeded.managed_id, "CORE", 19)  # 10:30: 3 → 20 instances; the cluster stays WAITING
    run(chat, clock, at(10, 31), at(11))
    status = chat.say("!emr status")
    assert "(estimated prices; 20 × m5.xlarge, 1h 00m)" in status, status
    # 10:00–10:30 at 3 × $0.31/h and 10:30–11:00 at 20 ×: $3.565; the resize is priced from the read
    # that sees it, at most 5 minutes and a poll late (17 more instances × 6 min: $0.53 less at worst).
    cost = dollars_so_far(status)
    assert 3.565 - 17 * 0.31 * 6 / 60 - 0.005 <= cost <= 3.565 + 0.005, status
    row = today_row(chat.say("!emr report 1"))
    assert row.split()[7] == f"${cost:.2f}", row  # the report prices each interval as the status does
    assert emulator.count("ListInstanceGroups") <= 1 + 12 + 1  # once, then once per 5 minutes


def test_a_resize_in_progress_is_read_every_minute_until_it_settles_then_every_five(
    chat: Chat, emulator: Emulator, seeded: Seeded, clock: Clock
) -> None:
    chat.say("!emr lock")
    run(chat, clock, at(10), at(10, 10))
    emulator.resize(seeded.managed_id, "CORE", 19, resizing=True)  # 10:10: EMR adds instances
    before = emulator.count("ListInstanceGroups")
    run(chat, clock, at(10, 11), at(10, 20))
    assert emulator.count("ListInstanceGroups") - before >= 5  # seen within 5 minutes, then read every minute
    emulator.resize(seeded.managed_id, "CORE", 19)  # 10:20: the group is RUNNING again
    run(chat, clock, at(10, 21), at(10, 21))
    settled = emulator.count("ListInstanceGroups")
    run(chat, clock, at(10, 22), at(11, 21))
    assert emulator.count("ListInstanceGroups") - settled <= 12  # steady: one read per 5 minutes


def scripted_day(chat: Chat, clock: Clock) -> Chat:
    """lock 10:00, restart 11:00, unlock 12:00, idle termination 12:30; the poller every minute."""
    assert chat.say("!emr lock analytics").startswith("🔒 alice holds analytics")
    run(chat, clock, at(10, 0), at(10, 59))
    clock.set(at(11))
    chat = chat.restart()
    run(chat, clock, at(11, 0), at(11, 59))
    clock.set(at(12))
    assert chat.say("!emr unlock").startswith("🔓 You released analytics")
    run(chat, clock, at(12, 0), at(12, 35))
    assert chat.announced("🛑 Terminated analytics")
    return chat


# up 10:00–12:30, held 10:00–12:00, idle 12:00–12:30; 2.5 h × $0.93 = $2.325; saved 12:30–19:00: 6.5 h × $0.93.
EXPECTED_ROW = "12-01 Tue   2:30   2:00   0:00   0:30   0:00     $2.33     $6.05  idle 1  ██░"


def test_the_report_of_a_scripted_day_is_exact(chat: Chat, clock: Clock) -> None:
    chat = scripted_day(chat, clock)
    clock.set(at(20))
    report = chat.say("!emr report 1")
    assert report.startswith("Usage of the managed clusters, last 1 day (Asia/Tokyo, to 12-01 20:00), 1 cluster")
    assert today_row(report) == EXPECTED_ROW
    assert "saved (estimate) = for each idle-rule termination, the cost of running on until that day's" in report
    assert "END_OF_DAY (19:00)" in report and "as of 2026-11-29" in report
    assert (
        "≈ estimated prices: the cost and saved figures use prices the shipped price table marks as estimates, "
        "not read from AWS's Price List; to read them: docs/operator-guide.md, Prices." in report
    )
    # Asked again after a restart: the same figures.
    chat = chat.restart()
    assert today_row(chat.say("!emr report 1")) == EXPECTED_ROW


def test_a_kill_mid_day_loses_nothing_and_counts_nothing_twice(tmp_path: Path, chat: Chat, clock: Clock) -> None:
    chat.say("!emr lock analytics")
    run(chat, clock, at(10, 0), at(11, 59))
    clock.set(at(12))
    chat.say("!emr unlock")
    run(chat, clock, at(12, 0), at(12, 20))
    snapshot = tmp_path / "killed"
    shutil.copytree(chat.data_dir, snapshot, ignore=shutil.ignore_patterns("*-shm"))  # kill -9 right after 12:20
    chat.stop()
    reborn = Chat(snapshot, chat.emr, clock).start()  # back at once: the idle time before the kill was written
    try:
        run(reborn, clock, at(12, 20), at(12, 35))
        clock.set(at(20))
        assert today_row(reborn.say("!emr report 1")) == EXPECTED_ROW
    finally:
        reborn.stop()


def test_the_bot_down_while_nobody_holds_the_cluster_is_not_idle(
    start_bot: Any, emulator: Emulator, seeded: Seeded, clock: Clock
) -> None:
    bot = start_bot(POLL_SECONDS=60, IDLE_MINUTES=120)  # the watched gap: two polls and a minute
    run(bot, clock, at(10), at(10, 20))
    bot.stop()
    clock.set(at(10, 50))  # down 30 minutes
    bot.start()
    run(bot, clock, at(10, 50), at(11))
    row = today_row(bot.say("!emr report 1"))
    # up 1:00 = idle 0:30 (10:00–10:20, 10:50–11:00) + not watched 0:30 (10:20–10:50)
    assert row.startswith("12-01 Tue   1:00   0:00   0:00   0:30   0:30 "), row


def test_a_cluster_terminated_outside_the_bot_ends_at_emrs_end_time_and_no_rule_is_credited(
    chat: Chat, emulator: Emulator, seeded: Seeded, clock: Clock
) -> None:
    chat.say("!emr lock")
    run(chat, clock, at(10), at(10, 30))
    emulator.emr_b().terminate_job_flows(JobFlowIds=[seeded.managed_id])  # someone, in the console, at 10:30
    run(chat, clock, at(10, 31), at(10, 40))
    clock.set(at(18))
    row = today_row(chat.say("!emr report 1"))
    assert row.startswith("12-01 Tue   0:30   0:30   0:00   0:00   0:00     $0.47     $0.00  —"), row


def minutes_of(hm: str) -> int:
    hours, minutes = hm.split(":")
    return int(hours) * 60 + int(minutes)


def test_a_cluster_whose_tag_was_removed_counts_only_while_it_was_managed(
    chat: Chat, emulator: Emulator, seeded: Seeded, clock: Clock
) -> None:
    chat.say("!emr lock")  # held: the idle rule leaves it up
    run(chat, clock, at(10), at(10, 59))
    emulator.emr_b().remove_tags(ResourceId=seeded.managed_id, TagKeys=["emr-chatops"])  # at 11:00
    run(chat, clock, at(11), at(13, 59))
    assert chat.announced("🏷️ analytics")  # the bot said it leaves the cluster alone (within 5 minutes)
    emulator.emr_b().add_tags(ResourceId=seeded.managed_id, Tags=[{"Key": "emr-chatops", "Value": "true"}])  # 14:00
    run(chat, clock, at(14), at(14, 9))
    assert chat.say("!emr lock").startswith("🔒 alice")  # managed again: alice answers the reminder it brought
    run(chat, clock, at(14, 10), at(15))
    row = today_row(chat.say("!emr report 1"))
    up, held = (minutes_of(figure) for figure in row.split()[2:4])
    # managed 10:00–11:00 and 14:00–15:00, each end noticed within the 5 minutes a tag takes to count
    assert 115 <= up <= 125 and held == up, row
    cost = float(row.split()[7].lstrip("$"))
    assert 0.93 * 115 / 60 <= cost <= 0.93 * 125 / 60, row  # 3 × m5.xlarge at $0.31/h, managed time only


def test_a_bad_report_argument_gets_one_line_and_changes_nothing(chat: Chat) -> None:
    chat.say("!emr status")
    before = (chat.plugin.get("state"), chat.plugin.get("ledger"))
    for words in ("0", "91", "abc", "7 8", "-3", "٣", "--days 3", "9" * 40):  # one bot for all: it starts slowly
        reply = chat.say(f"!emr report {words}")
        assert reply == "✗ !emr report takes one number of days, 1–90 (default 7): !emr report [DAYS]", words
    assert (chat.plugin.get("state"), chat.plugin.get("ledger")) == before


def test_a_report_asked_while_a_tick_runs_answers(chat: Chat, clock: Clock) -> None:
    chat.say("!emr lock")
    run(chat, clock, at(10), at(10, 10))
    errors: list[BaseException] = []

    def ticks() -> None:
        try:
            for _ in range(20):
                chat.tick()
        except BaseException as error:  # the poller never raises; a failure here is a bug
            errors.append(error)

    ticker = threading.Thread(target=ticks)
    ticker.start()
    replies = [chat.say("!emr report 2") for _ in range(3)]
    ticker.join()
    assert not errors and all(r.startswith("Usage of the managed clusters, last 2 days") for r in replies)


def test_an_operator_price_table_is_used_and_a_missing_price_is_said(
    tmp_path: Path, start_bot: Any, emulator: Emulator, seeded: Seeded
) -> None:
    table = tmp_path / "prices.json"
    table.write_text(
        '{"source": "our negotiated rates", "date": "2026-11-01", '
        '"regions": {"ap-northeast-1": {"r5.xlarge": {"ec2": 0.3, "emr": 0.07}}}}'
    )
    bot = start_bot(PRICES_FILE=str(table))
    status = bot.say("!emr status")
    assert "cost: cost unknown (no price for m5.xlarge in ap-northeast-1 in PRICES_FILE)" in status
    assert "$" not in status


def test_prices_read_from_aws_are_not_called_estimates(
    tmp_path: Path, start_bot: Any, clock: Clock, seeded: Seeded
) -> None:
    table = tmp_path / "prices.json"
    table.write_text(
        '{"source": "AWS Price List API", "date": "2026-11-30", "regions": {"ap-northeast-1": '
        '{"m5.xlarge": {"ec2": 0.248, "emr": 0.062, "read": "2026-11-30"}}}}'
    )
    bot = start_bot(PRICES_FILE=str(table))
    bot.say("!emr lock")
    clock.set(at(14, 10))
    assert "cost: ≈ $3.88 so far (3 × m5.xlarge, 4h 10m)" in bot.say("!emr status")
    report = bot.say("!emr report 1")
    assert "$3.88" in today_row(report) and "estimated" not in report


def test_a_bad_price_file_stops_activation_naming_it(tmp_path: Path, emulator: Emulator, clock: Clock) -> None:
    from emrchatops.domain.errors import ConfigError
    from emrchatops.domain.settings import from_mapping

    table = tmp_path / "prices.json"
    table.write_text('{"source": "x", "date": "2026-11-01", "regions": {"us-east-1": {"m5.xlarge": {"ec2": -1}}}}')
    with pytest.raises(ConfigError, match=r"PRICES_FILE.*prices.json: us-east-1 m5.xlarge: expected"):
        from_mapping(emr_config(emulator, PRICES_FILE=str(table)))
