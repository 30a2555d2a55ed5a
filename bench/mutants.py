"""Break the code on purpose and check that the tests guarding it fail.

    .venv/bin/python bench/mutants.py            # every mutant
    .venv/bin/python bench/mutants.py M3 R1      # some of them

Each mutant is one textual change to one file of ``plugins/emr`` (or of the folder
its ``base`` names, e.g. ``storage``), applied to a scratch copy of the checkout (never to this tree), and the tests named for it
are run there. A mutant is *caught* when at least one of them fails; a
surviving mutant means those tests cannot see the defect they are named after.
Exit status 1 if any mutant survives.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PY = ROOT / ".venv" / "bin" / "python"


@dataclass(frozen=True)
class Mutant:
    name: str
    what: str
    file: str
    old: str
    new: str
    tests: tuple[str, ...]
    base: str = "plugins/emr"  # the folder of ``file``, from the repository's root


T = "tests/test_trustworthy.py::"
R = "tests/test_rules.py::"
D = "tests/test_decisions.py::"
C = "tests/test_costs.py::"
B = "tests/test_buttons.py::"
P = "tests/test_report.py::"
A = "tests/test_prices.py::"
V = "tests/test_storage_versioned.py::"
Y = "tests/test_storage_dynamodb.py::"
G = "tests/test_targets.py::"
N = "tests/test_addressing.py::"
MUTANTS = (
    Mutant(
        "M1",
        "tags cached for the life of the process (part one)",
        "emrchatops/aws/adapter.py",
        "TAG_TTL = timedelta(minutes=5)",
        "TAG_TTL = timedelta(days=3650)",
        (
            T + "test_an_untagged_cluster_is_left_alone_within_five_minutes_and_never_terminated",
            T + "test_a_cluster_tagged_while_the_bot_runs_is_managed_within_five_minutes",
        ),
    ),
    Mutant(
        "M2",
        "no re-read before an automatic termination",
        "emrchatops/app/service.py",
        "                why = termination_refusal(record, fresh, effect.expect)\n",
        "                why = None\n",
        (T + "test_the_cluster_is_re_read_right_before_an_idle_termination_and_spared_if_untagged",),
    ),
    Mutant(
        "M3",
        "a stale listing is folded in",
        "emrchatops/app/service.py",
        "            if number < self._folded:",
        "            if False:",
        (T + "test_a_stale_listing_from_a_tick_does_not_erase_a_new_cluster_or_its_hold",),
    ),
    Mutant(
        "M4",
        "absence from one listing forgets the cluster and its holds",
        "emrchatops/domain/rules.py",
        "            new[cid] = replace(record, absent=UNSEEN, unseen_since=now)",
        "            del new[cid]",
        (T + "test_a_restart_with_a_wrong_cluster_tag_keeps_clusters_and_holds",),
    ),
    Mutant(
        "M5",
        "a pending termination is never re-decided",
        "emrchatops/domain/rules.py",
        "            why = doom_reason_gone(state, record, policy, now)\n",
        "            why = None\n",
        (
            T + "test_a_retried_idle_termination_is_dropped_when_the_cluster_becomes_busy",
            T + "test_a_retried_end_of_day_termination_is_dropped_the_next_morning",
        ),
    ),
    Mutant(
        "M6",
        "an ambiguous name picks the oldest cluster",
        "emrchatops/domain/decisions.py",
        "    if len(found) > 1:\n        raise AmbiguousName",
        "    if len(found) > 99:\n        raise AmbiguousName",
        (T + "test_two_managed_clusters_with_the_same_name_are_refused_with_both_ids",),
    ),
    Mutant(
        "M7",
        "names are single words (part one)",
        "emrchatops/domain/decisions.py",
        "    lengths = range(len(words), 0, -1) if rest_allowed else (len(words),)",
        "    lengths = (1,)",
        (T + "test_a_cluster_name_with_spaces_works_in_every_command",),
    ),
    Mutant(
        "M8",
        "an unmanaged cluster's name is read as a reason",
        "emrchatops/domain/decisions.py",
        "        if _matches(others, prefix):",
        "        if False:",
        (T + "test_an_unmanaged_clusters_name_is_refused_never_read_as_a_reason",),
    ),
    Mutant(
        "M9",
        "overtime after midnight means the next night (part one)",
        "emrchatops/domain/rules.py",
        "        for day in (today, today - timedelta(days=1)):",
        "        for day in (today,):",
        (T + "test_overtime_asked_after_midnight_extends_tonights_overtime",),
    ),
    Mutant(
        "M10",
        "the steps are never read",
        "emrchatops/domain/rules.py",
        "    if not record.listed or record.doomed is not None:\n        return False",
        "    if True:\n        return False",
        (
            T + "test_a_step_between_two_ticks_restarts_the_idle_clock",
            T + "test_steps_that_ran_while_the_bot_was_down_count",
        ),
    ),
    Mutant(
        "M11",
        "the poller is not tied to its activation (part one)",
        "emr.py",
        "self.start_poller(self.settings.poll_seconds, self.tick, args=(self._generation,))",
        "self.start_poller(self.settings.poll_seconds, self.tick)",
        (T + "test_deactivate_and_activate_while_a_tick_runs_leave_exactly_one_poller",),
    ),
    Mutant(
        "M12",
        "a held cluster ended outside the bot goes unannounced",
        "emrchatops/app/service.py",
        "                    self._announce(EndedOutside(record, info))",
        "                    pass",
        (T + "test_a_held_cluster_terminated_outside_the_bot_is_announced_once_with_its_holders",),
    ),
    Mutant(
        "M13",
        "history counts in any script's digits (part one)",
        "emr.py",
        'COUNT_WORD_RE = re.compile(r"[0-9]{1,3}")',
        'COUNT_WORD_RE = re.compile(r"\\d{1,3}")',
        (T + "test_history_with_other_scripts_digits_gets_a_usage_answer",),
    ),
    Mutant(
        "M14",
        "the part-one sort key for clusters without a creation time",
        "emrchatops/aws/adapter.py",
        "clusters.sort(key=lambda c: (c.created_at or EARLIEST, c.name, c.id))",
        "clusters.sort(key=lambda c: (c.created_at or datetime.min.astimezone(), c.name, c.id))",
        (T + "test_a_cluster_without_a_creation_time_does_not_break_the_listing",),
    ),
    Mutant(
        "R1",
        "overtime no longer rescues a cluster doomed by the end of day",
        "emrchatops/domain/rules.py",
        '    doomed = None if record.doomed and record.doomed.rule in ("end_of_day", "overtime") else record.doomed\n',
        "    doomed = record.doomed\n",
        (R + "test_overtime_rescues_a_cluster_doomed_by_the_end_of_day",),
    ),
    Mutant(
        "R2",
        "overtime allowed after tonight's pass",
        "emrchatops/domain/rules.py",
        "    if has_overtime or doomed_tonight or pass_to_come:",
        "    if True:",
        (R + "test_no_overtime_after_tonights_pass_for_a_cluster_without_it",),
    ),
    Mutant(
        "R3",
        "WARN_MINUTES=0 still warns",
        "emrchatops/domain/rules.py",
        "        elif policy.warn_minutes and now >= deadline.at - policy.warn",
        "        elif now >= deadline.at - timedelta(minutes=5)",
        (R + "test_warn_minutes_zero_sends_no_warning_and_still_terminates",),
    ),
    Mutant(
        "R4",
        "an unbounded list of remembered clusters",
        "emrchatops/domain/state.py",
        "        if len(self.clusters) <= RECORD_LIMIT:",
        "        if True:",
        (R + "test_remembered_clusters_are_bounded",),
    ),
    Mutant(
        "R5",
        "the idle rule dooms a cluster the listing did not show",
        "emrchatops/domain/rules.py",
        "    for record in state.listed():\n        start = record.start",
        "    for record in state.clusters.values():\n        start = record.start",
        (
            R + "test_a_cluster_missing_from_one_listing_keeps_its_record_and_holds",
            R + "test_holds_survive_until_aws_says_the_cluster_ended_and_unseen_clusters_are_never_doomed",
        ),
    ),
    Mutant(
        "A1",
        "YARN work does not count (activity ignored by the idle rule)",
        "emrchatops/domain/rules.py",
        '    if record.state != "WAITING" or record.holds or record.activity == "busy":',
        '    if record.state != "WAITING" or record.holds:',
        (
            "tests/test_activity.py::test_yarn_work_for_45_minutes_keeps_an_unheld_cluster_and_idle_counts_from_the_end_of_the_work",
            R + "test_a_busy_reading_keeps_the_cluster_even_when_the_idle_time_is_short",
        ),
    ),
    Mutant(
        "A2",
        "a reminded hold expires at once (no grace)",
        "emrchatops/domain/rules.py",
        "            elif now >= hold.reminded_at + policy.grace:",
        "            elif now >= hold.reminded_at:",
        ("tests/test_activity.py::test_a_hold_confirmed_in_time_is_kept_with_its_reason",),
    ),
    Mutant(
        "A3",
        "a confirmation does not withdraw the reminder",
        "emrchatops/domain/rules.py",
        "reason=reason[:REASON_LIMIT] or existing.reason, confirmed=now, reminded_at=None",
        "reason=reason[:REASON_LIMIT] or existing.reason, confirmed=now",
        ("tests/test_rules.py::test_a_confirmation_keeps_the_hold_and_its_reason",),
    ),
    # Cost (DESIGN §13)
    Mutant(
        "C1",
        "spot capacity not marked as an upper bound",
        "emrchatops/domain/costs.py",
        "total = total + Cost(group.count * price.per_hour, upper_bound=group.spot, estimated=price.estimated)",
        "total = total + Cost(group.count * price.per_hour, upper_bound=False, estimated=price.estimated)",
        (C + "test_cost_is_count_times_hours_times_ec2_plus_emr",),
    ),
    Mutant(
        "C2",
        "a resize ignored: each composition priced to the end",
        "emrchatops/domain/costs.py",
        "seg_end = end if index + 1 == len(segments) else min(end, segments[index + 1][0])",
        "seg_end = end",
        (C + "test_a_resize_mid_way_is_priced_piecewise",),
    ),
    Mutant(
        "C3",
        "a type without a price counted as free (a guess)",
        "emrchatops/domain/costs.py",
        "            return NoPrice(group.instance_type, region)",
        "            continue",
        (
            C + "test_cost_is_count_times_hours_times_ec2_plus_emr",
            P + "test_an_operator_price_table_is_used_and_a_missing_price_is_said",
        ),
    ),
    Mutant(
        "C4",
        "the bot's downtime counted as idle",
        "emrchatops/domain/ledger.py",
        "        idle = subtract(intersect(unheld, watched), busy)",
        "        idle = subtract(unheld, busy)",
        (
            C + "test_the_scripted_day_is_exact_whatever_the_restarts",
            P + "test_the_bot_down_while_nobody_holds_the_cluster_is_not_idle",
        ),
    ),
    Mutant(
        "C5",
        "a held span opened when the ledger notices it, not at the hold's start",
        "emrchatops/domain/ledger.py",
        "            usage = replace(usage, held_since=min(since, now))",
        "            usage = replace(usage, held_since=now)",
        (C + "test_a_hold_taken_while_the_ledger_was_not_written_counts_from_its_since",),
    ),
    Mutant(
        "C6",
        "up time from the bot's first sight, not EMR's timeline",
        "emrchatops/domain/ledger.py",
        "        return self.created_at or self.first_seen",
        "        return self.first_seen",
        (C + "test_up_time_is_emrs_own_from_the_creation_not_from_the_bots_first_sight",),
    ),
    Mutant(
        "C7",
        "a held span closed when the ledger notices it, not at the release",
        "emrchatops/domain/ledger.py",
        "            elif record.last_release is not None and record.last_release >= usage.held_since:",
        "            elif False:",
        (C + "test_a_hold_taken_while_the_ledger_was_not_written_counts_from_its_since",),
    ),
    Mutant(
        "C8",
        "automatic terminations not recorded",
        "emrchatops/domain/ledger.py",
        "        if ending is not None and ending.rule is not None and (ending.at, ending.rule) not in usage.terminations:",
        "        if False:",
        (C + "test_the_scripted_day_is_exact_whatever_the_restarts", P + "test_the_report_of_a_scripted_day_is_exact"),
    ),
    Mutant(
        "C9",
        "a saving counted beyond now",
        "emrchatops/domain/ledger.py",
        "    until = min(until, now)",
        "    until = until",
        (C + "test_a_saving_is_never_counted_beyond_now",),
    ),
    Mutant(
        "C10",
        "instances read at every tick",
        "emrchatops/domain/ledger.py",
        "        if usage is None or not usage.instances or usage.instances_state != record.state:",
        "        if True:",
        (P + "test_status_shows_a_cost_that_grows_with_time_and_asks_aws_nothing_more",),
    ),
    Mutant(
        "C11",
        "a fleet cluster never read through ListInstanceFleets",
        "emrchatops/aws/adapter.py",
        '            if type(error) is not AwsError or "InvalidRequestException" not in str(error):',
        "            if True:",
        (C + "test_a_fleet_cluster_is_read_through_list_instance_fleets_and_list_instances",),
    ),
    Mutant(
        "C12",
        "the chart uploaded to the channel's name, not its id",
        "emrchatops/chat/slack/chat.py",
        '        channel = msg.to.id if msg.is_group else getattr(msg.frm, "channelid", None)',
        '        channel = str(msg.to) if msg.is_group else getattr(msg.frm, "channelid", None)',
        ("tests/test_slack_e2e.py::test_the_team_runs_the_cluster_from_slack",),
    ),
    Mutant(
        "C13",
        "the poller never writes the ledger (only a clean stop does)",
        "emrchatops/app/service.py",
        "            self._save_ledger(ledger_bounded(follow(ledger, state, now), now))\n            self._write_ledger()\n",
        "            self._save_ledger(ledger_bounded(follow(ledger, state, now), now))\n",
        (P + "test_a_kill_mid_day_loses_nothing_and_counts_nothing_twice",),
    ),
    Mutant(
        "C14",
        "a cluster whose tag was removed keeps counting in the report",
        "emrchatops/domain/ledger.py",
        "        up = subtract(up, merge([*usage.unmanaged, *_open(usage.unmanaged_since, now)]))",
        "        up = up",
        (P + "test_a_cluster_whose_tag_was_removed_counts_only_while_it_was_managed",),
    ),
    Mutant(
        "C15",
        "a cluster whose instances were never read is counted as $0.00 in the report",
        "emrchatops/domain/ledger.py",
        "        elif not usage.instances:  # never read: unknown, never $0.00",
        "        elif False:",
        (
            C + "test_a_cluster_whose_instances_were_never_read_makes_the_cost_partial_never_zero",
            "tests/test_iam.py::test_a_report_never_shows_an_unknown_cost_as_a_number",
        ),
    ),
    Mutant(
        "C16",
        "a resize that leaves the cluster WAITING is never noticed (instances read on state changes only)",
        "emrchatops/app/service.py",
        "                if resize_check_due(cluster_id, read[0], now, read[1]):",
        "                if False:",
        (
            P + "test_a_resized_cluster_is_priced_with_its_new_composition_from_the_resize_on",
            P + "test_a_resize_in_progress_is_read_every_minute_until_it_settles_then_every_five",
        ),
    ),
    Mutant(
        "C17",
        "a resize under way is read only every 5 minutes (its steps priced late)",
        "emrchatops/domain/ledger.py",
        "    if changing:\n        return now - read_at >= SETTLE_CHECK",
        "    if False:\n        return now - read_at >= SETTLE_CHECK",
        (
            C + "test_a_resize_check_is_due_once_per_five_minute_slot_and_every_minute_while_resizing",
            P + "test_a_resize_in_progress_is_read_every_minute_until_it_settles_then_every_five",
        ),
    ),
    Mutant(
        "B1",
        "leftover click listeners are kept: two run after a reload",
        "emrchatops/chat/slack/clicks.py",
        "        others = [other for other in client.socket_mode_request_listeners if not getattr(other, MARKER, False)]",
        "        others = list(client.socket_mode_request_listeners)",
        (B + "test_exactly_one_listener_after_any_sequence_of_attach_and_detach",),
    ),
    Mutant(
        "B2",
        "a click skips ACCESS_CONTROLS",
        "emrchatops/chat/slack/clicks.py",
        '        if not command_allowed(backend, msg, f"emr_{click.action.command}", name):',
        "        if False:",
        (B + "test_a_click_from_a_room_access_controls_refuses_changes_nothing",),
    ),
    Mutant(
        "B3",
        "a click on a message whose deadline passed still acts",
        "emrchatops/domain/buttons.py",
        '    if now >= click.buttons.deadline:\n        return "passed"',
        '    if now >= click.buttons.deadline and False:\n        return "passed"',
        (B + "test_a_click_on_a_message_whose_cluster_is_gone_or_whose_deadline_passed_is_stale",),
    ),
    Mutant(
        "B4",
        "a typed lock leaves the idle warning's button live (no sweep for a held cluster)",
        "emrchatops/domain/buttons.py",
        '    if buttons.kind == "idle" and record.holds:',
        '    if buttons.kind == "idle" and record.holds and False:',
        (B + "test_an_idle_warning_loses_its_button_at_the_next_tick_once_someone_holds_the_cluster",),
    ),
    Mutant(
        "B5",
        "a terminated cluster's warning keeps its buttons (no sweep after the poller's tick)",
        "emr.py",
        "        self.chat.after_tick(self.service.state, self.clock())\n",
        "",
        (B + "test_a_warning_loses_its_buttons_when_the_rule_terminates_the_cluster",),
    ),
    Mutant(
        "S1",
        "Slack text read as delivered: a typed reason escaped twice",
        "emrchatops/chat/slack/markup.py",
        "        return typed_from_slack(text, self._name_of)",
        "        return text",
        ("tests/test_slack_e2e.py::test_the_team_runs_the_cluster_from_slack",),
    ),
    Mutant(
        "S2",
        "the doctor trusts the backend's one-page membership",
        "emrchatops/chat/slack/chat.py",
        '        info = self.backend.slack_web.conversations_info(channel=room.id)\n        member = info["channel"].get("is_member")\n        return None if member is None else bool(member)',
        '        return getattr(room, "joined", None)',
        ("tests/test_slack_e2e.py::test_the_team_runs_the_cluster_from_slack",),
    ),
    # Prices from AWS's Price List (DESIGN §19)
    Mutant(
        "P1",
        "a price marked estimated is priced as if read from AWS",
        "emrchatops/domain/costs.py",
        "total = total + Cost(group.count * price.per_hour, upper_bound=group.spot, estimated=price.estimated)",
        "total = total + Cost(group.count * price.per_hour, upper_bound=group.spot)",
        (
            C + "test_a_cost_from_an_estimated_entry_is_marked_estimated_and_one_read_from_aws_is_not",
            P + "test_status_shows_a_cost_that_grows_with_time_and_asks_aws_nothing_more",
        ),
    ),
    Mutant(
        "P2",
        "adding costs forgets that one was estimated",
        "emrchatops/domain/costs.py",
        "            self.estimated or other.estimated,\n",
        "            self.estimated and other.estimated,\n",
        (C + "test_a_cost_from_an_estimated_entry_is_marked_estimated_and_one_read_from_aws_is_not",),
    ),
    Mutant(
        "P3",
        "the status line does not say its prices are estimates",
        "emrchatops/chat/words.py",
        '            what = f"estimated prices; {what}"',
        "            pass",
        (P + "test_status_shows_a_cost_that_grows_with_time_and_asks_aws_nothing_more",),
    ),
    Mutant(
        "P4",
        "the report does not say its prices are estimates",
        "emrchatops/chat/words.py",
        "        if report.total.cost.estimated or report.total.saving.estimated:",
        "        if False:",
        (P + "test_the_report_of_a_scripted_day_is_exact",),
    ),
    Mutant(
        "P5",
        "a cost read from AWS called an estimate",
        "emrchatops/chat/words.py",
        "        if c.cost.estimated:  # DESIGN §19: a price not read from AWS says so",
        "        if True:",
        (P + "test_prices_read_from_aws_are_not_called_estimates",),
    ),
    Mutant(
        "P6",
        "the EMR fee taken as 25 % of EC2, not read",
        "emrchatops/aws/prices.py",
        "prices[region][instance_type] = Price(ec2_price, emr_price, read=day)",
        "prices[region][instance_type] = Price(ec2_price, ec2_price * 0.25, read=day)",
        (A + "test_an_emr_fee_that_is_not_25_percent_of_ec2_is_read_not_computed",),
    ),
    Mutant(
        "P7",
        "only the first page of GetProducts read (NextToken ignored)",
        "emrchatops/aws/prices.py",
        "            if not token:\n                return\n",
        "            if True:\n                return\n",
        (A + "test_several_pages_are_read_to_the_last",),
    ),
    Mutant(
        "P8",
        "a throttled request not asked again",
        "emrchatops/aws/prices.py",
        "if code in THROTTLING_CODES and attempt < self.attempts:",
        "if False:",
        (A + "test_throttling_is_retried_with_a_doubling_pause",),
    ),
    Mutant(
        "P9",
        "a missing EMR fee invented as $0",
        "emrchatops/aws/prices.py",
        '"EMR": emr.get(instance_type, set())}',
        '"EMR": emr.get(instance_type, {0.0})}',
        (A + "test_a_type_without_a_price_is_left_out_with_a_line_naming_it",),
    ),
    Mutant(
        "P10",
        "a product trusted to the filters (another region's, a Capacity Block's price)",
        "emrchatops/aws/prices.py",
        'if instance_type not in wanted or not _matches(product, {**terms, "regionCode": region}):',
        "if instance_type not in wanted:",
        (A + "test_several_pages_are_read_to_the_last",),
    ),
    Mutant(
        "P11",
        "the lowest of several prices for one type taken",
        "emrchatops/aws/prices.py",
        "if len(values) != 1]",
        "if not values]\n                found = {k: {min(v)} if v else v for k, v in found.items()}",
        (A + "test_several_prices_for_one_type_are_not_guessed_between",),
    ),
    Mutant(
        "A4",
        "a stale IsIdle is said to be no datapoint yet",
        "emrchatops/chat/words.py",
        "        if record.activity_at is not None:  # a datapoint was read, and is too old to say anything of now",
        "        if False:",
        ("tests/test_activity.py::test_a_stale_isidle_is_said_to_have_stopped_and_since_when",),
    ),
    Mutant(
        "A5",
        "the doctor reads IsIdle by itself, not through the rules' decision (a stale datapoint is busy)",
        "emrchatops/ops/doctor.py",
        "        says = {c.id: reading_says(readings.get(c.id), now) for c in managed}",
        '        says = {c.id: "none" if (r := readings.get(c.id)) is None else "busy" if r.busy else "idle" for c in managed}',
        ("tests/test_activity.py::test_the_doctor_warns_on_a_stale_isidle_instead_of_calling_the_cluster_busy",),
    ),
    # -- the storage plugins' compare-and-set, lease and once API (DESIGN §18)
    Mutant(
        "V1",
        "SQLite: a compare-and-set writes over a revision that moved",
        "sqlite.py",
        "            if actual != expected_revision:\n",
        "            if False:\n",
        (V + "test_two_instances_acting_at_once_one_wins_the_other_re_reads_and_nothing_is_lost[SQLite]",),
        base="storage",
    ),
    Mutant(
        "V2",
        "DynamoDB: a compare-and-set writes over a newer revision",
        "dynamodb.py",
        '"#rev = :expected"',
        '"#rev >= :expected"',
        (V + "test_two_instances_acting_at_once_one_wins_the_other_re_reads_and_nothing_is_lost[DynamoDB]",),
        base="storage",
    ),
    Mutant(
        "V3",
        "DynamoDB: errbot's plain set leaves the revision as it was",
        "dynamodb.py",
        '"if_not_exists(#rev, :zero) + :one"',
        '"if_not_exists(#rev, :one) + :zero"',
        (V + "test_a_plain_set_moves_the_revision_so_a_compare_and_set_over_it_fails[DynamoDB]",),
        base="storage",
    ),
    Mutant(
        "V4",
        "DynamoDB: a fenced write ignores the lease's expiry (a holder paused past its lease acts)",
        "dynamodb.py",
        '"#owner = :owner AND #fencing = :fencing AND #expiry > :now"',
        '"#owner = :owner AND #fencing = :fencing AND (#expiry > :now OR #expiry <= :now)"',
        (V + "test_a_holder_paused_past_its_lease_cannot_write_even_if_nobody_took_over[DynamoDB]",),
        base="storage",
    ),
    Mutant(
        "V5",
        "DynamoDB: a fenced write ignores the fencing counter",
        "dynamodb.py",
        '"#owner = :owner AND #fencing = :fencing AND #expiry > :now"',
        '"#owner = :owner AND (#fencing = :fencing OR #fencing <> :fencing) AND #expiry > :now"',
        (V + "test_a_lease_from_an_earlier_term_cannot_write_though_its_owner_holds_the_lease_again[DynamoDB]",),
        base="storage",
    ),
    Mutant(
        "V6",
        "SQLite: a takeover keeps the fencing counter",
        "sqlite.py",
        "int(row[2]) + (row[0] != owner)",
        "int(row[2])",
        (V + "test_an_expired_lease_is_taken_over_with_the_next_fencing_counter[SQLite]",),
        base="storage",
    ),
    Mutant(
        "V7",
        "DynamoDB: a recorded id never expires (expiry left to the table's TTL)",
        "dynamodb.py",
        '"attribute_not_exists(#pk) OR #exp <= :now"',
        '"attribute_not_exists(#pk) OR #exp <= :now AND #exp < #exp"',
        (V + "test_an_id_is_recorded_once_until_it_expires[DynamoDB]",),
        base="storage",
    ),
    Mutant(
        "V8",
        "DynamoDB: a retried compare-and-set whose first attempt landed reports a conflict",
        "dynamodb.py",
        'if old.get("w", {}).get("S") == token and int(old["rev"]["N"]) == new:',
        "if False:",
        (Y + "test_a_retried_compare_and_set_whose_first_attempt_landed_succeeds",),
        base="storage",
    ),
    Mutant(
        "V9",
        "DynamoDB: no size check (DynamoDB's own error instead of a clear refusal)",
        "dynamodb.py",
        "        if size > ITEM_LIMIT:\n",
        "        if False:\n",
        (Y + "test_a_value_too_large_for_an_item_is_refused_clearly_and_the_old_value_kept",),
        base="storage",
    ),
    Mutant(
        "V10",
        "DynamoDB: a missing table is created without EMR_CHATOPS_DYNAMODB_CREATE",
        "dynamodb.py",
        "            if not self.create:\n",
        "            if False:\n",
        (Y + "test_a_missing_table_is_refused_at_start_naming_the_template",),
        base="storage",
    ),
    Mutant(
        "V11",
        "DynamoDB: errbot's keys() lists the leases and recorded ids too",
        "dynamodb.py",
        '":prefix": {"S": VALUE_PREFIX}',
        '":prefix": {"S": ""}',
        (V + "test_leases_and_once_records_are_not_errbot_keys[DynamoDB]",),
        base="storage",
    ),
    Mutant(
        "V12",
        "config.py: EMR_CHATOPS_STORAGE in another case (DYNAMODB) is not the DynamoDB plugin",
        "config.py",
        "STORAGE = _STORAGES.get(_storage.strip().lower(), _storage)",
        "STORAGE = _STORAGES.get(_storage, _storage)",
        (Y + "test_config_py_selects_it_from_the_environment",),
        base=".",
    ),
    Mutant(
        "V13",
        "the storage calls a DynamoDB action the shipped policy does not allow",
        "dynamodb.py",
        '"Query": ("dynamodb:Query",),',
        '"Query": ("dynamodb:Query", "dynamodb:Scan"),',
        ("tests/test_policies.py::test_the_state_table_policy_allows_exactly_the_storage_s_actions_on_the_table_only",),
        base="storage",
    ),
    Mutant(
        "V14",
        "the state-table policy allows its actions on every table",
        "account-a-dynamodb.json",
        '"Resource": "arn:aws:dynamodb:${TABLE_REGION}:${ACCOUNT_A_ID}:table/${TABLE_NAME}"',
        '"Resource": "arn:aws:dynamodb:${TABLE_REGION}:${ACCOUNT_A_ID}:table/*"',
        ("tests/test_policies.py::test_iam_allows_the_bot_its_table_and_nothing_else_in_dynamodb",),
        base="deploy/iam",
    ),
    Mutant(
        "V15",
        "the image stops errbot with SIGTERM (no clean stop: the plugin is never deactivated)",
        "Dockerfile",
        "STOPSIGNAL SIGINT",
        "STOPSIGNAL SIGTERM",
        ("tests/test_deploy.py::test_the_image_is_slim_python_3_11_pinned_non_root_and_stops_errbot_cleanly",),
        base=".",
    ),
    # -- two instances on one table: versioned state, the poller's lease (DESIGN §18)
    Mutant(
        "I1",
        "an instance on a shared table keeps its decoded copy of the state (a hold taken on the other is not seen)",
        "emrchatops/app/service.py",
        "                if self._depth == 1 and self._states.shared:",
        "                if self._depth == 1 and False:",
        ("tests/test_two_instances.py::test_a_hold_taken_on_one_instance_is_seen_by_the_other",),
    ),
    Mutant(
        "I2",
        "the poller's saves are not fenced by its lease (an instance paused past its lease still acts)",
        "emrchatops/app/service.py",
        'state.to_dict(), self._revision, getattr(self._fenced, "fence", None), self.clock()',
        "state.to_dict(), self._revision, None, self.clock()",
        ("tests/test_two_instances.py::test_an_instance_paused_past_its_lease_acts_on_nothing_it_decided",),
    ),
    Mutant(
        "I3",
        "every instance runs the rules, whoever holds the lease",
        "emrchatops/app/service.py",
        '            if fence is None:\n                if getattr(self, "_led", False):',
        '            if False:\n                if getattr(self, "_led", False):',
        ("tests/test_two_instances.py::test_only_the_lease_holder_runs_the_rules_and_warns_once",),
    ),
    Mutant(
        "I4",
        "a save over a revision that moved on is not refused (the state store writes blindly)",
        "emrchatops/store/versioned.py",
        "            return int(self._backend.set_versioned(self._key, data, revision, fence=fence, now=now))",
        "            self._backend.set(self._key, data)\n            return revision + 1",
        ("tests/test_two_instances.py::test_two_holds_taken_at_the_same_moment_on_two_instances_are_both_kept",),
    ),
    Mutant(
        "P12",
        "PRICES=api reads AWS's prices at every tick, not once a day",
        "emrchatops/domain/costs.py",
        "    if kept.read_at is None or now - kept.read_at >= PRICES_REFRESH:",
        "    if True:",
        (A + "test_prices_api_reads_the_types_the_bot_sees_once_a_day_into_its_storage",),
    ),
    Mutant(
        "P13",
        "a failed read of AWS's prices announced at every attempt",
        "emrchatops/app/service.py",
        "            if before.failure is None:",
        "            if True:",
        (A + "test_a_failed_read_keeps_the_last_prices_and_is_announced_once",),
    ),
    Mutant(
        "P14",
        "a failed read of AWS's prices drops the last ones",
        "emrchatops/domain/costs.py",
        "    return PricesKept(kept.table, kept.read_at, now, why, kept.missing)",
        "    return PricesKept(None, kept.read_at, now, why, kept.missing)",
        (A + "test_a_failed_read_keeps_the_last_prices_and_is_announced_once",),
    ),
    Mutant(
        "P15",
        "a failed read of AWS's prices tried again at every tick",
        "emrchatops/domain/costs.py",
        "    if kept.failure is not None and kept.tried_at is not None and now - kept.tried_at < PRICES_RETRY:",
        "    if False:",
        (A + "test_a_failed_read_keeps_the_last_prices_and_is_announced_once",),
    ),
    Mutant(
        "P16",
        "the prices read from AWS are kept but not used",
        "emrchatops/app/service.py",
        "        return priced[1]\n",
        "        return self.settings.prices\n",
        (A + "test_prices_api_reads_the_types_the_bot_sees_once_a_day_into_its_storage",),
    ),
    Mutant(
        "P17",
        "the doctor does not ask AWS's Price List",
        "emrchatops/ops/doctor.py",
        "        checks.append(self._prices_check(identity_works=base is not None))\n",
        "",
        (A + "test_the_doctor_reads_a_price_with_the_bot_s_own_identity_and_names_a_denial",),
    ),
    Mutant(
        "P18",
        "the doctor's cost check ignores the prices the bot read",
        "emrchatops/ops/doctor.py",
        "            prices = overlay(s.prices, kept)\n",
        "            pass\n",
        (A + "test_the_doctor_reads_a_price_with_the_bot_s_own_identity_and_names_a_denial",),
    ),
    Mutant(
        "I5",
        "with two instances, the leader terminates without claiming it in the shared state first",
        "emrchatops/app/service.py",
        "                if why is None and self._states.shared:",
        "                if why is None and False:",
        (
            "tests/test_two_instances.py::"
            "test_a_hold_asked_on_the_other_instance_while_the_leader_terminates_is_never_acknowledged_then_lost",
        ),
    ),
    Mutant(
        "I6",
        "with two instances, a message Slack redelivers to the other connection runs its command again",
        "emr.py",
        "        if key is None or chat.first(key):",
        "        if True:",
        ("tests/test_two_instances.py::test_a_message_slack_redelivers_to_the_other_instance_runs_its_command_once",),
    ),
    Mutant(
        "L1",
        "each botocore session loads and parses the service models again (no shared data loader)",
        "emrchatops/aws/crossaccount.py",
        '    session.register_component("data_loader", shared_loader())\n',
        "",
        ("tests/test_crossaccount.py::test_every_session_and_client_share_one_botocore_data_loader",),
    ),
    Mutant(
        "T1",
        "the clusters of a target that could not be listed are marked unseen (absence proves nothing)",
        "emrchatops/domain/rules.py",
        "        if (record.target, record.region) in unreached:\n            continue\n",
        "",
        (
            "tests/test_fleet.py::test_a_target_that_cannot_be_reached_is_announced_once_in_its_channel_and_its_clusters_kept",
        ),
    ),
    Mutant(
        "T2",
        "a target's admins are admins on every target",
        "emrchatops/app/service.py",
        "        return self.admin or target in self.admin_of",
        "        return self.admin or bool(self.admin_of)",
        ("tests/test_fleet.py::test_a_target_s_admin_may_force_there_only",),
    ),
    Mutant(
        "T3",
        "a target's notices go to NOTIFY_CHANNEL, not to the target's channel",
        "emr.py",
        "            if served.name == target:\n                return served.notify",
        "            if False:\n                return served.notify",
        ("tests/test_fleet.py::test_the_rules_run_per_target_and_each_notice_goes_to_its_target_s_channel",),
    ),
    Mutant(
        "T4",
        "one target that cannot be listed fails the whole listing (every target's rules stop)",
        "emrchatops/aws/fleet.py",
        "        if len(unreached) == len(self.adapters):",
        "        if unreached:",
        (
            "tests/test_fleet.py::test_a_target_that_cannot_be_reached_is_announced_once_in_its_channel_and_its_clusters_kept",
        ),
    ),
    Mutant(
        "T5",
        "an unreachable target is announced at every tick",
        "emrchatops/app/service.py",
        "            if self._target_failures.get(target) != first.code:",
        "            if True:",
        (
            "tests/test_fleet.py::test_a_target_that_cannot_be_reached_is_announced_once_in_its_channel_and_its_clusters_kept",
        ),
    ),
    Mutant(
        "T6",
        "serving several targets, names are read as for one (an ambiguous name is not refused with the qualified names)",
        "emrchatops/app/service.py",
        "            if not self.several:  # one target in one region",
        "            if True:  # one target in one region",
        ("tests/test_fleet.py::test_an_ambiguous_name_is_refused_with_every_qualified_name_and_changes_nothing",),
    ),
    Mutant(
        "T7",
        "state from before targets (v4) migrates without its target and region",
        "emrchatops/domain/state.py",
        'cid: {**r, "target": target, "region": region}',
        "cid: r",
        ("tests/test_rules.py::test_a_version_4_state_belongs_to_the_one_target_it_served",),
    ),
    Mutant(
        "T8",
        "the emulator's EMR is one region for every client (a listing in us-west-2 shows Tokyo's clusters)",
        "moto_emr_resources.py",
        "    ElasticMapReduceResponse.get_region_from_url = get_region_from_url",
        "    pass",
        ("tests/test_fleet.py::test_each_region_lists_only_its_own_clusters_on_the_emulator",),
        base="demo",
    ),
    Mutant(
        "T9",
        "every target's token under one storage key (each AssumeRole overwrites the other's)",
        "emr.py",
        "    if first:\n        return TOKEN_KEY",
        "    if True:\n        return TOKEN_KEY",
        ("tests/test_fleet.py::test_each_role_has_its_own_token_in_storage",),
    ),
    Mutant(
        "S3",
        "the doctor's reply is not escaped for Slack (a cluster named <!channel> pings everyone)",
        "emr.py",
        "        return self.chat.markup.escape(Doctor(",
        "        return (Doctor(",
        ("tests/test_slack_e2e.py::test_on_slack_the_doctor_shows_a_cluster_name_as_it_is_and_it_pings_nobody",),
    ),
    Mutant(
        "D1",
        "an admin may terminate a held cluster without --force",
        "emrchatops/domain/decisions.py",
        "    if others and not force:",
        "    if others and not force and not admin:",
        (D + "test_who_may_terminate_a_cluster",),
    ),
    Mutant(
        "G1",
        "a target's role ARN in another account accepted (the bot would act in an account the file does not name)",
        "emrchatops/domain/targets.py",
        "            if match.group(1) != account:",
        "            if False:",
        (G + "test_a_bad_targets_file_is_refused_naming_the_file_the_target_and_the_key",),
    ),
    Mutant(
        "G2",
        "two targets that can manage one cluster accepted (one account and region, tags that can both match)",
        "emrchatops/domain/targets.py",
        "            if (\n                other.account == target.account",
        "            if False and (\n                other.account == target.account",
        (G + "test_a_bad_targets_file_is_refused_naming_the_file_the_target_and_the_key",),
    ),
    Mutant(
        "G3",
        "ROLE_ARN beside TARGETS_FILE accepted (which role would the bot assume?)",
        "emrchatops/domain/settings.py",
        "        if beside:",
        "        if False:",
        (G + "test_a_part_one_key_beside_a_targets_file_is_refused_by_name",),
    ),
    Mutant(
        "G4",
        "a qualified name matched against every target's clusters (game-b/analytics finds game-a's)",
        "emrchatops/domain/addressing.py",
        "if c.target.casefold() == head and region in",
        "if region in",
        (N + "test_a_qualified_name_never_resolves_to_another_target_s_cluster",),
    ),
    Mutant(
        "G5",
        "qualified words also read as a bare name (a cluster of game-a named game-b/x answers to game-b/x)",
        "emrchatops/domain/addressing.py",
        "    if slash and head in known:\n        region, slash, name",
        "    if False:\n        region, slash, name",
        (N + "test_a_qualified_name_never_resolves_to_another_target_s_cluster",),
    ),
    Mutant(
        "G6",
        "the first target that has a template started when several have it",
        "emrchatops/domain/addressing.py",
        "    if len(matches) > 1:",
        "    if False:",
        (N + "test_start_refuses_an_ambiguous_or_unknown_template",),
    ),
    Mutant(
        "G7",
        "the region of TARGET/REGION/NAME not compared (game-b/us-west-2/analytics finds Tokyo's)",
        "emrchatops/domain/addressing.py",
        'and region in ("", c.region.casefold()) and name',
        "and name",
        (N + "test_a_qualified_name_never_resolves_to_another_target_s_cluster",),
    ),
)


def run(mutant: Mutant, scratch: Path) -> tuple[bool, float, str]:
    target = scratch / mutant.base / mutant.file
    original = target.read_text()
    assert original.count(mutant.old) == 1, f"{mutant.name}: the text to mutate is not found exactly once"
    target.write_text(original.replace(mutant.old, mutant.new))
    started = time.monotonic()
    try:
        done = subprocess.run(
            [str(PY), "-m", "pytest", "-q", "-x", "-p", "no:xdist", "-p", "no:randomly", *mutant.tests],
            cwd=scratch,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
    finally:
        target.write_text(original)
    last = (done.stdout.strip().splitlines() or ["?"])[-1]
    return done.returncode != 0, time.monotonic() - started, last


def main(names: list[str]) -> int:
    chosen = [m for m in MUTANTS if not names or m.name in names]
    survived = 0
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp) / "tree"
        shutil.copytree(ROOT, scratch, ignore=shutil.ignore_patterns(".venv", ".git", "data", "__pycache__"))
        print(f"{'mutant':6}  {'caught':6}  {'s':>5}  what (tests run: outcome)")
        for mutant in chosen:
            caught, seconds, last = run(mutant, scratch)
            survived += not caught
            print(f"{mutant.name:6}  {'yes' if caught else 'NO':6}  {seconds:5.1f}  {mutant.what} ({last})")
    print(f"{len(chosen) - survived} of {len(chosen)} mutants caught")
    return 1 if survived else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
