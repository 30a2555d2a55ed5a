"""Presentation: every word the bot says, rendered for the chat it goes to.

One :class:`View` per plugin activation, built for plain text (the Text
console, Errbot's test backend) or for Slack (mentions are ``<@U…>``, status
is a card, user text is escaped for Slack). Facts come in as the rules' data;
nothing here decides anything or talks to AWS. User-supplied text is made
inert in exactly one place, :meth:`View.inert`.

The three automatic rules share one wording table, :data:`RULES`: what the
rule is called in history, why it terminated a cluster, what the next
deadline looks like in ``!emr status``, and its warning.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from emrchatops.app.notices import (
    ActivityBack,
    ActivityDown,
    BackstopBack,
    BackstopFailed,
    BecameReady,
    Contended,
    EndedOutside,
    Expired,
    ForceTerminated,
    GoneMeanwhile,
    LeftAlone,
    NoCluster,
    NoOvertime,
    NotAllowed,
    NoTemplate,
    Notice,
    NotTerminated,
    OvertimeAnnounced,
    PollerBack,
    PollerDown,
    PricesFailed,
    ReasonTooLong,
    Refusal,
    StartFailed,
    StartFailure,
    StartNotAllowed,
    TargetBack,
    TargetDown,
    TerminatedByRule,
    TerminationFailed,
    Unnamed,
)
from emrchatops.chat.markup import Markup, PlainMarkup
from emrchatops.domain.addressing import AmbiguousAddress, UnknownTarget
from emrchatops.domain.costs import Cost, NoPrice, PricesKept, summary
from emrchatops.domain.decisions import (
    ActiveCluster,
    AmbiguousName,
    Denied,
    NameProblem,
    NoneRunning,
    SeveralRunning,
    StartRefused,
    TemplateProblem,
    UnknownName,
)
from emrchatops.domain.errors import AccessDeniedError, AwsError, EmrChatopsError, one_line
from emrchatops.domain.ledger import CostSoFar, Figures, Report, Unknown
from emrchatops.domain.rules import Cancelled, Deadline, Expire, Policy, Ready, Remind, Warn, busy, next_deadline
from emrchatops.domain.settings import Settings
from emrchatops.domain.state import UNMANAGED, ClusterInfo, ClusterRecord, Event, Hold, State
from emrchatops.domain.templates import Template
from emrchatops.domain.vocabulary import STARTING_STATES

CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
# Slack's markup in a message as it arrives: <@U…>, <@U…|name>, <#C…|name>, <!here>,
# <!subteam^S…|@team>, <https://…|label>; the text between them has &, < and > escaped.
# Status card colours (Slack attachment side bar): Slack's own good / info / warning / danger.
COLOR_IDLE = "#2EB886"  # WAITING, nobody holds it: the idle countdown runs
COLOR_BUSY = "#439FE0"  # a step is running (or the cluster is starting): never idle
COLOR_HELD = "#DAA038"  # someone holds it
COLOR_DOOMED = "#A30200"  # being terminated now


REPORT_RULES = {"idle": "idle", "end_of_day": "end of day", "overtime": "overtime"}
REFUSALS = (
    NoCluster,
    Unnamed,
    GoneMeanwhile,
    NoTemplate,
    StartNotAllowed,
    StartFailed,
    ReasonTooLong,
    NotAllowed,
    NotTerminated,
    NoOvertime,
)
BAR_CELLS = 24  # one cell per hour of the day
BAR_MARKS = (("held", "█"), ("busy", "▓"), ("idle", "░"), ("unwatched", "·"))


def refused(text: str) -> str:
    """A command's refusal, as the asker (or the clicker) sees it."""
    return f"✗ {text}"


apology = "✗ Something unexpected went wrong (details are in the bot's log); nothing was changed."


def serves_several(settings: Settings) -> bool:
    """Whether the bot serves more than one (target, region) (DESIGN §17)."""
    return len(settings.targets) > 1 or any(len(t.regions) > 1 for t in settings.targets)


class CostWords:
    """The wording of costs and of ``!emr report`` (DESIGN §13); mixed into :class:`View`."""

    settings: Settings
    markup: Markup

    def cost_so_far(self, c: CostSoFar) -> str:
        """ "≈ $12.40 so far (3 × m5.xlarge, 4h 10m)"; never a number without a price."""
        if c.cost is None:
            if c.problem:
                return f"cost unknown (its instances could not be read: {c.problem}; tried again every 5 minutes)"
            return "not known yet (its instances are read at the next poll)"
        if isinstance(c.cost, NoPrice):
            return self.no_price(c.cost)
        what = f"{summary(c.composition)}, {duration(c.up)}"
        if c.cost.estimated:  # DESIGN §19: a price not read from AWS says so
            what = f"estimated prices; {what}"
        if c.cost.upper_bound:
            return f"≤ {dollars(c.cost)} so far ({what}; spot priced at on-demand: an upper bound)"
        return f"≈ {dollars(c.cost)} so far ({what})"

    def no_price(self, missing: NoPrice) -> str:
        where = self.price_table_name()
        if self.settings.prices_api:  # AWS's Price List had none either
            where = f"AWS's Price List (PRICES=api) nor in {where}"
        return f"cost unknown (no price for {missing.instance_type} in {missing.region} in {where})"

    def price_table_name(self) -> str:
        return "PRICES_FILE" if self.settings.prices_file else "the shipped price table"

    def prices_failed(self, why: str, kept: PricesKept) -> str:
        """PRICES=api: the daily read of AWS's prices failed (announced once, until a read works)."""
        if kept.table is not None:
            stay = f"the prices read on {kept.table.date.isoformat()}"
        else:
            table = self.settings.prices
            estimated = any(p.estimated for types in table.regions.values() for p in types.values())
            stay = f"{self.price_table_name()}'s{' (estimated)' if estimated else ''}"
        why = why if why.endswith(".") else why + "."
        return (
            f"⚠ AWS's prices were not read (PRICES=api): {why} Costs stay at {stay}; the bot tries again every "
            "hour, and says so here only once."
        )

    def report_usage(self, maximum: int) -> str:
        if serves_several(self.settings):
            return (
                f"!emr report takes one number of days, 1–{maximum} (default 7), and a target: "
                "!emr report [DAYS] [TARGET]"
            )
        return f"!emr report takes one number of days, 1–{maximum} (default 7): !emr report [DAYS]"

    def report(self, report: Report, days: int, now: datetime) -> str:
        """The table, one Unicode bar per day, the totals, and the definitions under the figures."""
        zone = self.settings.timezone
        of = f" of {self.markup.escape(report.target)}" if report.target else ""
        header = (
            f"Usage of the managed clusters{of}, last {days} day{'s' if days != 1 else ''} "
            f"({zone.key}, to {self.local(now, with_day=True)}), {report.clusters} cluster"
            f"{'s' if report.clusters != 1 else ''}"
        )
        columns = f"{'day':<9} {'up':>6} {'held':>6} {'busy':>6} {'idle':>6} {'n/w':>6} {'cost':>9} {'saved':>9}  auto-terminations"
        lines = [columns]
        for day, figures in report.days:
            lines.append((self._report_row(_day(day), figures) + "  " + bar(figures)).rstrip())
        lines.append(self._report_row("total", report.total))
        body = "\n".join(lines)
        notes = [
            "busy = work running while nobody held it; idle = up, unheld, no work; "
            "n/w = up and unheld while the bot was not watching (down or restarting): neither busy nor idle known.",
            f"bar: one cell per hour — {', '.join(f'{mark} {name}' for name, mark in BAR_MARKS)}.",
            "saved (estimate) = " + self.saving_definition(report),
            f"Prices: {report.prices.source}, as of {report.prices.date.isoformat()}"
            f"{' (PRICES_FILE)' if self.settings.prices_file else ''}; EC2 on-demand + EMR per instance-hour.",
        ]
        if report.total.cost.upper_bound or report.total.saving.upper_bound:
            notes.append("≤: spot capacity is priced at on-demand, so the figure is an upper bound.")
        if report.total.cost.estimated or report.total.saving.estimated:
            notes.append(
                f"≈ estimated prices: the cost and saved figures use prices {self.price_table_name()} marks as "
                "estimates, not read from AWS's Price List; to read them: docs/operator-guide.md, Prices."
            )
        for unknown in report.total.unknown:
            notes.append(
                f"Cost of {unknown.cluster} unknown: {self.unknown_why(unknown)}. The days it ran and the total "
                "leave it out: ≥ marks a partial figure, unknown one with nothing known."
            )
        # In a code block on both chats: the columns stay aligned, and markdown leaves the lines alone.
        return f"{header}\n```\n{body}\n```\n" + "\n".join(notes)

    def unknown_why(self, unknown: Unknown) -> str:
        if unknown.price is not None:
            table = "PRICES_FILE" if self.settings.prices_file else "the shipped price table"
            return f"no price for {unknown.price.instance_type} in {unknown.price.region} in {table}"
        if unknown.problem:
            return f"its instances could not be read ({unknown.problem}; see !emr doctor)"
        return "its instances were not read yet"

    def report_title(self, days: int) -> str:
        return f"EMR usage, last {days} day{'s' if days != 1 else ''} ({self.settings.timezone.key})"

    def chart_failed(self, error: Exception) -> str:
        code = getattr(getattr(error, "response", None), "get", lambda _k: None)("error")
        why = f"Slack said {code}" if isinstance(code, str) else "see the bot's log"
        fix = (
            ": the app needs the files:write scope (deploy/slack-app-manifest.yaml)" if code == "missing_scope" else ""
        )
        return f"✗ The chart was not uploaded ({why}){fix}; the figures above are complete."

    def saving_definition(self, report: Report) -> str:
        eod = report.end_of_day.strftime("%H:%M") if report.end_of_day else None
        until = f"that day's END_OF_DAY ({eod})" if eod else "the end of that day (END_OF_DAY is off)"
        return (
            f"for each idle-rule termination, the cost of running on until {until}; for each end-of-day or "
            "overtime termination, the cost of running on until the next hold or cluster start, at most 24 h "
            "(never beyond now), at the cluster's instances when it was terminated."
        )

    def _report_row(self, label: str, f: Figures) -> str:
        stops = ", ".join(f"{REPORT_RULES.get(rule, rule)} {n}" for rule, n in sorted(f.terminations.items())) or "—"
        return (
            f"{label:<9} {hm(f.up):>6} {hm(f.held):>6} {hm(f.busy):>6} {hm(f.idle):>6} {hm(f.unwatched):>6} "
            f"{partial(f.cost, bool(f.unknown)):>9} {partial(f.saving, f.saving_unknown):>9}  {stops}"
        )

    def local(self, moment: datetime | None, *, with_day: bool = False) -> str:
        raise NotImplementedError  # View's


@dataclass(frozen=True)
class RuleWords:
    """How one automatic rule is said. Placeholders: {at} {since} {idle} {eod} {cluster} {holders}."""

    history: str  # who acted, in `!emr history`
    reason: str  # why a cluster was terminated
    deadline: str  # the next action, in status and replies
    warning: str  # the announcement WARN_MINUTES before
    warning_held: str = ""  # appended to the warning when someone holds the cluster


RULES: dict[str, RuleWords] = {
    "idle": RuleWords(
        history="idle rule",
        reason="nobody held it for {idle} minutes",
        deadline="terminated at {at} unless someone locks it (idle since {since})",
        warning="⏳ {cluster} has been idle since {since} and will be terminated at {at} unless someone says `!emr lock`.",
    ),
    "end_of_day": RuleWords(
        history="end of day",
        reason="end of day ({eod})",
        deadline="terminated at {at} (end of day)",
        warning="⏳ End of day: {cluster} will be terminated at {at}{held}. "
        "A holder can keep it longer with `!emr overtime [HH:MM]`.",
        warning_held=", although {holders} still hold it",
    ),
    "overtime": RuleWords(
        history="overtime ended",
        reason="its overtime ended",
        deadline="terminated at {at} (when its overtime ends)",
        warning="⏳ Overtime ends: {cluster} will be terminated at {at}.{held}",
        warning_held=" Holders: {holders}.",
    ),
}


class View(CostWords):
    """Every sentence the bot says, marked up for one chat by its :class:`~emrchatops.chat.markup.Markup`."""

    def __init__(self, settings: Settings, policy: Policy, markup: Markup | None = None) -> None:
        self.settings = settings
        self.policy = policy
        self.markup: Markup = markup or PlainMarkup()

    # -- basics -------------------------------------------------------------------------
    def local(self, moment: datetime | None, *, with_day: bool = False) -> str:
        if moment is None:
            return "?"
        local = moment.astimezone(self.settings.timezone)
        return local.strftime("%m-%d %H:%M") if with_day else local.strftime("%H:%M")

    def mention(self, user: str, name: str) -> str:
        """A person the message is about: where the chat pings (Slack), the mention notifies them."""
        return self.markup.mention(user, name)

    def mentions(self, holds: Iterable[Hold]) -> str:
        return " ".join(self.mention(h.user, h.name) for h in holds)

    def inert(self, text: str, limit: int = 60) -> str:
        """User-supplied text, shown so that chat markup in it does nothing.

        One line, bounded, in code quotes, and escaped by the chat's markup (for Slack code
        quotes are not enough: see :meth:`emrchatops.chat.slack.markup.SlackMarkup.inert`).
        """
        flat = CONTROL_RE.sub(" ", text)
        if len(flat) > limit:
            flat = flat[: limit - 1] + "…"
        flat = self.markup.inert(flat.replace("`", "'"))
        return "`" + flat + "`"

    def aws_text(self, text: str, limit: int = 300) -> str:
        """Text from AWS (EMR's state-change reason): one line, bounded, escaped as the chat asks."""
        flat = one_line(CONTROL_RE.sub(" ", text))
        if len(flat) > limit:
            flat = flat[: limit - 1] + "…"
        return self.markup.escape(flat)

    def cluster(self, record: ClusterRecord | ClusterInfo | ActiveCluster) -> str:
        return f"{self.named(record)} ({record.id})"

    def named(self, record: ClusterRecord | ClusterInfo | ActiveCluster | Event) -> str:
        """A cluster's name as EMR has it (anyone who may create clusters chose it): on Slack escaped once."""
        return self.aws_text(record.name, 256)

    def hold(self, hold: Hold, *, mention: bool = False) -> str:
        """``alice since 10:05: `reason```; *mention* makes the holder a Slack mention (they are pinged)."""
        reason = f": {self.inert(hold.reason, 200)}" if hold.reason else ""
        who = self.mention(hold.user, hold.name) if mention and self.markup.pings else hold.name
        return f"{who} since {self.local(hold.since)}{reason}"

    def holders(self, record: ClusterRecord) -> str:
        return ", ".join(self.hold(h) for h in record.holds) or "nobody"

    # -- the rules ------------------------------------------------------------------------
    def _fill(self, template: str, **values: str) -> str:
        eod = self.settings.end_of_day
        return template.format(idle=self.settings.idle_minutes, eod=f"{eod:%H:%M}" if eod else "off", **values)

    def rule_reason(self, rule: str | None) -> str:
        words = RULES.get(rule or "")
        return self._fill(words.reason) if words else (rule or "terminated")

    def rule_by(self, rule: str | None) -> str:
        words = RULES.get(rule or "")
        return words.history if words else (rule or "")

    def deadline(self, deadline: Deadline, now: datetime) -> str:
        at = self.local(deadline.at, with_day=deadline.at - now > timedelta(hours=20))
        return self._fill(RULES[deadline.rule].deadline, at=at, since=self.local(deadline.idle_since))

    def warning(self, record: ClusterRecord, deadline: Deadline) -> str:
        words = RULES[deadline.rule]
        held = self._fill(words.warning_held, holders=self.mentions(record.holds)) if record.holds else ""
        text = self._fill(
            words.warning,
            cluster=self.cluster(record),
            at=self.local(deadline.at),
            since=self.local(deadline.idle_since),
            held=held,
        )
        if deadline.rule != "idle" and busy(record):
            text += " Work is running on it now."  # the end of day does not wait for it (overtime does)
        return text

    def reminder(self, effect: Remind) -> str:
        hold, record = effect.hold, effect.cluster
        return (
            f"⏰ {self.mention(hold.user, hold.name)}, you hold {self.named(record)} since {self.local(hold.since)} "
            f"and it has done no work since {self.local(effect.quiet_since)}. Still using it? "
            f"`!emr lock {self.named(record)}` keeps your hold; otherwise it ends at {self.local(effect.ends_at)}."
        )

    def expired(self, effect: Expire, state: State, now: datetime) -> str:
        hold, record = effect.hold, effect.cluster
        asked = f" after the reminder at {self.local(hold.reminded_at)}" if hold.reminded_at else ""
        text = f"⌛ {self.mention(hold.user, hold.name)}'s hold on {self.cluster(record)} ended: not confirmed{asked}."
        if record.holds:
            return text + f" Still held by {self.holders(record)}."
        deadline = next_deadline(state, record, self.policy, now)
        return text + (
            f" Nobody holds it now: {self.deadline(deadline, now)}." if deadline else " Nobody holds it now."
        )

    def activity(self, record: ClusterRecord, problem: str | None, now: datetime) -> str:
        """What the cluster's YARN is doing, from IsIdle (DESIGN §10)."""
        if problem:
            return f"activity unknown ({problem})"
        if record.activity == "busy":
            return f"busy (YARN work at {self.local(record.activity_at)})"
        if record.activity == "idle":
            return f"no work since {self.local(record.worked_at)}" if record.worked_at else "no YARN work seen"
        if record.activity_at is not None:  # a datapoint was read, and is too old to say anything of now
            return f"activity unknown ({self.isidle_stopped(record.activity_at, now)})"
        return "activity unknown (no IsIdle datapoint yet)"

    def isidle_stopped(self, latest: datetime, now: datetime) -> str:
        """``IsIdle stopped: no datapoint since 10:35, 25m ago`` (*latest*: the latest datapoint's period)."""
        return f"IsIdle stopped: no datapoint since {self.local(latest)}, {duration(now - latest)} ago"

    def pending_reminders(self, record: ClusterRecord, *, mention: bool = False) -> list[str]:
        return [
            f"{self.mention(h.user, h.name) if mention else h.name}: asked at {self.local(h.reminded_at)}, "
            f"hold ends {self.local(h.reminded_at + self.policy.grace)}"
            for h in record.holds
            if h.reminded_at is not None
        ]

    def terminated_by_rule(self, record: ClusterRecord, rule: str) -> str:
        text = f"🛑 Terminated {self.cluster(record)}: {self.rule_reason(rule)}."
        return text + (f" It was held by {self.mentions(record.holds)}." if record.holds else "")

    def termination_failed(self, record: ClusterRecord, rule: str, problem: str) -> str:
        return f"⚠️ Could not terminate {self.cluster(record)} ({self.rule_reason(rule)}): {one_line(problem)} I will keep trying."

    def termination_called_off(self, record: ClusterRecord, rule: str, why: str) -> str:
        return f"✋ Not terminating {self.cluster(record)} ({self.rule_reason(rule)}) after all: {why}."

    def ended(self, record: ClusterRecord, info: ClusterInfo | None) -> str:
        """A remembered cluster AWS says has ended, not by the bot's hand this time."""
        how = (info.reason or info.state) if info is not None else "terminated"
        if record.doomed is not None:
            return f"🛑 {self.cluster(record)} was terminated: {self.rule_reason(record.doomed.rule)}."
        text = f"🛑 {self.cluster(record)} was terminated outside the bot ({how})."
        return text + (f" It was held by {self.mentions(record.holds)}." if record.holds else "")

    def unmanaged(self, record: ClusterRecord) -> str:
        text = (
            f"🏷️ {self.cluster(record)} no longer carries the tag {self.settings.cluster_tag}: "
            "the bot leaves it alone (no idle or end-of-day termination) until it is tagged again."
        )
        return text + (f" Holds kept: {self.mentions(record.holds)}." if record.holds else "")

    def poller_down(self, problem: str) -> str:
        return f"⚠️ The EMR poller cannot reach the cluster account: {one_line(problem)}"

    poller_back = "✓ The EMR poller reaches the cluster account again."

    def target_down(self, target: str, account: str, regions: Sequence[str], problem: str) -> str:
        return (
            f"⚠️ The EMR poller cannot list the clusters of {self.markup.escape(target)} (account {account}, "
            f"{', '.join(regions)}): {one_line(problem)} Its clusters and holds are kept as they were; "
            "the other targets are watched as usual."
        )

    def target_back(self, target: str, account: str) -> str:
        return f"✓ The EMR poller lists the clusters of {self.markup.escape(target)} (account {account}) again."

    def activity_down(self, problem: str) -> str:
        return (
            f"⚠️ Cannot read the clusters' activity (IsIdle) from CloudWatch: {one_line(problem)} "
            "Until then the idle rule goes by the cluster state and steps alone."
        )

    activity_back = "✓ The clusters' activity (IsIdle) can be read from CloudWatch again."

    # -- status ---------------------------------------------------------------------------
    @property
    def several(self) -> bool:
        """Whether the bot serves more than one (target, region) (DESIGN §17): status is grouped by them."""
        return serves_several(self.settings)

    def where_title(self, target: str, region: str) -> str:
        """The heading of one (target, region)'s clusters in ``!emr status``."""
        account = next((t.account for t in self.settings.targets if t.name == target), "?")
        return f"{self.markup.escape(target)} — account {account}, {region}"

    def where_order(self, record: ClusterRecord) -> tuple[int, int]:
        """Status groups in the order of the targets and their regions."""
        for i, target in enumerate(self.settings.targets):
            if target.name == record.target:
                regions = list(target.regions)
                return i, regions.index(record.region) if record.region in regions else len(regions)
        return len(self.settings.targets), 0

    def no_cluster(self, state: State | None = None) -> str:
        if self.several:
            served = "; ".join(
                f"{self.markup.escape(t.name)} (account {t.account}, {', '.join(t.regions)}, tag {t.cluster_tag})"
                for t in self.settings.targets
            )
            text = f"No managed EMR cluster is running in {served}."
        else:
            text = (
                f"No managed EMR cluster is running in account {self.settings.account_id} "
                f"({self.settings.region}, tag {self.settings.cluster_tag})."
            )
        hidden = [r for r in state.clusters.values() if r.absent and r.holds] if state else []
        if hidden:
            names = ", ".join(
                f"{self.cluster(r)} ({'untagged' if r.absent == UNMANAGED else 'not listed'})" for r in hidden
            )
            text += f" Holds are kept on {names} until AWS says it ended."
        return text + self.templates_hint()

    def templates_hint(self) -> str:
        """What `!emr start` can start, when starting is on ("" when it is off)."""
        names = [t.name for t in self.settings.templates]
        if not names:
            return ""
        if len(names) == 1:
            return f" Start one: `!emr start {names[0]} [REASON…]`."
        return f" Start one: `!emr start TEMPLATE [REASON…]` (templates: {', '.join(names)})."

    @staticmethod
    def start_time(record: ClusterRecord, cluster: ClusterInfo) -> datetime:
        """When the cluster was started: the bot's `!emr start`, else AWS's creation time, else first seen."""
        return record.start.at if record.start else (cluster.created_at or record.first_seen)

    def _facts(self, state: State, record: ClusterRecord, now: datetime) -> tuple[str, list[str]]:
        """(next action, notes): the same facts for the text and the card."""
        notes = []
        if record.start is not None and record.state in STARTING_STATES:
            start = record.start
            by = self.mention(start.by, start.by_name) if self.markup.pings else start.by_name
            notes.append(
                f"Started by {by} at {self.local(start.at)} from template {start.template}; the ready notice follows."
            )
        notes += [f"Reminder: {line}." for line in self.pending_reminders(record, mention=self.markup.pings)]
        if record.overtime and not self.policy.night_over(record.overtime.day, now):
            by = self.mention(record.overtime.by, record.overtime.by) if self.markup.pings else record.overtime.by
            notes.append(f"Overtime until {self.local(record.overtime.until)} (asked by {by}).")
        if record.doomed is not None:
            return f"being terminated now ({self.rule_reason(record.doomed.rule)})", notes
        deadline = next_deadline(state, record, self.policy, now)
        if record.state != "WAITING" and not record.holds:
            notes.append(f"Not idle while {record.state}: the idle clock starts when it is WAITING.")
        return (self.deadline(deadline, now) if deadline is not None else "none"), notes

    def status_lines(
        self,
        state: State,
        record: ClusterRecord,
        cluster: ClusterInfo,
        now: datetime,
        activity_problem: str | None,
        cost: CostSoFar | None = None,
    ) -> str:
        started = cluster.created_at or record.first_seen
        next_action, notes = self._facts(state, record, now)
        if cluster.state in STARTING_STATES:
            lines = [f"{self.cluster(cluster)} — {cluster.state} for {precise(now - self.start_time(record, cluster))}"]
        else:
            lines = [f"{self.cluster(cluster)} — {cluster.state}, up {duration(now - started)}"]
        lines.append("  held by " + ("; ".join(self.hold(h) for h in record.holds) or "nobody"))
        lines.append(f"  activity: {self.activity(record, activity_problem, now)}")
        if cost is not None:
            lines.append(f"  cost: {self.cost_so_far(cost)}")
        lines.append(f"  next: {next_action}")
        lines += [f"  {note[0].lower()}{note[1:].rstrip('.')}" for note in notes]
        return "\n".join(lines)

    def status_card(
        self,
        state: State,
        record: ClusterRecord,
        cluster: ClusterInfo,
        now: datetime,
        activity_problem: str | None,
        cost: CostSoFar | None = None,
    ) -> dict[str, Any]:
        """One cluster's card (title, link, body, colour, fields): the same facts as :meth:`status_lines`;
        :func:`emrchatops.chat.slack.chat.status_message` makes it a Slack attachment.

        The colour says what matters at a glance: red, being terminated; orange, held;
        blue, busy (never idle); green, WAITING with the idle countdown running.
        """
        started = cluster.created_at or record.first_seen
        next_action, notes = self._facts(state, record, now)
        if record.doomed is not None:
            color = COLOR_DOOMED
        else:
            color = COLOR_HELD if record.holds else COLOR_BUSY if busy(record) else COLOR_IDLE
        return {
            "title": self.cluster(cluster),
            "link": self.console_link(cluster.id, record.region),
            "body": " ".join(notes),
            "color": color,
            "fields": (
                (
                    "State",
                    f"{cluster.state} ({precise(now - self.start_time(record, cluster))} since the start)"
                    if cluster.state in STARTING_STATES
                    else cluster.state,
                ),
                *((("Target", self.where_title(record.target, record.region)),) if self.several else ()),
                ("Up for", duration(now - started)),
                ("Holders", "\n".join(self.hold(h, mention=True) for h in record.holds) or "nobody"),
                ("Activity", self.activity(record, activity_problem, now)),
                *((("Cost", self.cost_so_far(cost)),) if cost is not None else ()),
                ("Next action", next_action),
            ),
        }

    def status_fallback(self, record: ClusterRecord, cluster: ClusterInfo, next_action: str) -> str:
        """``analytics (j-…) WAITING, held by alice, next: terminated at 19:00 (end of day)``."""
        held = "held by " + ", ".join(h.name for h in record.holds) if record.holds else "not held"
        return f"{self.cluster(cluster)} {cluster.state}, {held}, next: {next_action}"

    def console_link(self, cluster_id: str, region: str = "") -> str | None:
        """The cluster's page in the EMR console, in its region (the cluster's account must be the console's)."""
        if self.settings.endpoint_url is not None or not self.settings.role_arn.startswith("arn:aws:"):
            return None  # an emulator (no console), or a partition with another console domain
        region = region or self.settings.region
        return f"https://{region}.console.aws.amazon.com/emr/home?region={region}#/clusterDetails/{cluster_id}"

    # -- command replies ---------------------------------------------------------------------
    def locked(self, state: State, record: ClusterRecord, name: str, now: datetime, *, overtime_possible: bool) -> str:
        text = f"🔒 {name} holds {self.cluster(record)}. Holders: {self.holders(record)}."
        if record.doomed is not None:
            text += f" ⚠️ It is being terminated ({self.rule_reason(record.doomed.rule)})"
            return text + ("; a holder can still ask for `!emr overtime`." if overtime_possible else ".")
        deadline = next_deadline(state, record, self.policy, now)
        return text + (f" Next: {self.deadline(deadline, now)}." if deadline is not None else "")

    def released(self, state: State, record: ClusterRecord, released: Hold, user: str, name: str, now: datetime) -> str:
        who = "You" if released.user == user else self.mention(released.user, released.name)
        text = f"🔓 {who} released {self.cluster(record)}"
        if released.user != user:
            text += f" (released by {name})"
        if record.holds:
            return text + f". Still held by {self.holders(record)}."
        deadline = next_deadline(state, record, self.policy, now)
        tail = f" Nobody holds it now: {self.deadline(deadline, now)}." if deadline else " Nobody holds it now."
        return text + "." + tail

    def terminating(self, record: ClusterRecord, name: str, others: Sequence[Hold]) -> str:
        text = f"🛑 Terminating {self.cluster(record)} at {name}'s request."
        return text + (f" Its holders were {self.mentions(others)}." if others else "")

    def force_terminated(self, record: ClusterRecord, name: str, others: Sequence[Hold]) -> str:
        return f"🛑 {name} force-terminated {self.cluster(record)}, held by {self.mentions(others)}."

    def overtime_set(self, record: ClusterRecord, name: str, until: datetime) -> str:
        return f"🌙 {self.cluster(record)} stays past end of day until {self.local(until)} ({name}'s overtime)."

    def gone_meanwhile(self, cluster: ClusterInfo | ClusterRecord) -> str:
        return f"{self.cluster(cluster)} is no longer running; see !emr status."

    def not_terminated(self, record: ClusterRecord, why: str) -> str:
        return f"Not terminating {self.cluster(record)}: {why} (nothing was changed); see !emr status."

    # -- usage: the answers to words a command cannot take -----------------------------------
    def what_to_do(self, subcommands: Sequence[str]) -> str:
        return "Say what to do: !emr " + " | ".join(subcommands) + " (details: !help EMR)."

    def unknown_subcommand(self, word: str, subcommands: Sequence[str]) -> str:
        return f"Unknown subcommand {self.inert(word)}: try !emr " + " | ".join(subcommands) + "."

    def unknown_option(self, word: str) -> str:
        return f"Unknown option {self.inert(word)}."

    def too_long(self, length: int, limit: int) -> str:
        return f"That is {length} characters of arguments; the limit is {limit}."

    def reason_too_long(self, length: int, limit: int) -> str:
        return f"The reason is {length} characters long; keep it under {limit}."

    user_needs_name = "--user needs a name: !emr unlock [CLUSTER] --user NAME"
    bad_time = "The time must be HH:MM, 00:00–23:59."
    doctor_usage = "!emr doctor takes no arguments."

    def history_usage(self, maximum: int) -> str:
        return f"!emr history takes one number N (1–{maximum})."

    def history_range(self, maximum: int) -> str:
        return f"N must be between 1 and {maximum}."

    def no_overtime(self, problem: ValueError) -> str:
        return f"No overtime: {problem}."

    # -- refusals --------------------------------------------------------------------------
    def name_problem(self, problem: NameProblem, state: State | None = None) -> str:
        if isinstance(problem, NoneRunning):
            return self.no_cluster(state)
        if isinstance(problem, SeveralRunning):
            return f"Several clusters are running ({', '.join(problem.names)}): name one."
        if isinstance(problem, AmbiguousAddress):
            return (
                f"Several managed clusters are called {self.inert(problem.name)}: name one of "
                f"{', '.join(self.inert(q) for q in problem.qualified)}."
            )
        if isinstance(problem, UnknownTarget):
            return f"No target is called {self.inert(problem.word)} (targets: {', '.join(problem.targets) or 'none'})."
        if isinstance(problem, AmbiguousName):
            return (
                f"Several managed clusters are called {self.inert(problem.name)} "
                f"({', '.join(problem.ids)}): name one by its id."
            )
        assert isinstance(problem, UnknownName)
        return (
            f"No managed cluster called {self.inert(problem.word)} is running (managed: "
            f"{', '.join(problem.managed) or 'none'}); see !emr status."
        )

    # -- the service's notices and refusals, worded (app.notices) -------------------------------
    def notice(self, notice: Notice) -> str:
        """The sentence for one announcement of the service."""
        match notice:
            case Warn(cluster, deadline):
                return self.warning(cluster, deadline)
            case Cancelled(cluster, rule, why):
                return self.termination_called_off(cluster, rule, why)
            case Remind():
                return self.reminder(notice)
            case Expired(effect, state, now):
                return self.expired(effect, state, now)
            case BecameReady(effect, state, now):
                return self.ready(effect, state, now)
            case StartFailure(record, info):
                return self.start_failure(record, info)
            case EndedOutside(record, info):
                return self.ended(record, info)
            case LeftAlone(record):
                return self.unmanaged(record)
            case PollerDown(problem):
                return self.poller_down(problem)
            case PollerBack():
                return self.poller_back
            case TargetDown(target, account, regions, problem):
                return self.target_down(target, account, regions, problem)
            case TargetBack(target, account):
                return self.target_back(target, account)
            case ActivityDown(problem):
                return self.activity_down(problem)
            case ActivityBack():
                return self.activity_back
            case BackstopFailed(record, wanted, problem):
                return self.backstop_failed(record, wanted, problem)
            case BackstopBack(record, wanted):
                return self.backstop_back(record, wanted)
            case TerminationFailed(record, rule, problem):
                return self.termination_failed(record, rule, problem)
            case TerminatedByRule(record, rule):
                return self.terminated_by_rule(record, rule)
            case ForceTerminated(record, name, others):
                return self.force_terminated(record, name, others)
            case OvertimeAnnounced(record, name, until):
                return self.overtime_set(record, name, until)
            case PricesFailed(why, kept):
                return self.prices_failed(why, kept)
        raise TypeError(f"no wording for {notice!r}")  # a new notice without its sentence: fails its first test

    def refusal(self, refusal: Refusal) -> str:
        """The one-line answer to a command the service refused."""
        match refusal:
            case Contended():
                return (
                    "The clusters' state kept changing on another instance of the bot while this was decided; "
                    "nothing was changed. Please try again."
                )
            case NoCluster(state):
                return self.no_cluster(state)
            case Unnamed(problem):
                return self.name_problem(problem)
            case GoneMeanwhile(cluster):
                return self.gone_meanwhile(cluster)
            case NoTemplate(problem):
                return self.template_problem(problem)
            case StartNotAllowed(refused):
                return self.start_refused(refused)
            case StartFailed(template, error):
                return self.start_failed(template, error)
            case ReasonTooLong(length, limit):
                return self.reason_too_long(length, limit)
            case NotAllowed(denied, record):
                return self.denied(denied, record)
            case NotTerminated(record, why):
                return self.not_terminated(record, why)
            case NoOvertime(problem):
                return self.no_overtime(problem)
        raise TypeError(f"no wording for {refusal!r}")

    def error_text(self, error: EmrChatopsError) -> str:
        """What to answer for a domain error: the refusal it carries, worded here, or its own line."""
        problem = error.problem
        return self.refusal(problem) if isinstance(problem, REFUSALS) else str(error)

    def denied(self, denied: Denied, record: ClusterRecord) -> str:
        holders = ", ".join(self.hold(h, mention=True) for h in denied.holds) or "nobody"
        if denied.code == "held_by_others":
            return f"{self.named(record)} is held by {holders}: ask them, or an admin can add --force."
        if denied.code == "force_needs_admin":
            return f"Only admins can --force the termination of a cluster held by others ({self.named(record)})."
        if denied.code == "not_holder":
            return f"You don't hold {self.named(record)}; holders: {self.holders(record)}."
        if denied.code == "release_needs_admin":
            return "Only admins can release someone else's hold."
        if denied.code == "target_not_holder":
            return f"{self.inert(denied.target)} does not hold {self.named(record)}; holders: {self.holders(record)}."
        if denied.code == "overtime_needs_hold":
            return f"Only holders can ask for overtime: `!emr lock {self.named(record)}` first."
        return f"Not allowed ({denied.code})."  # pragma: no cover - every code is worded above

    # -- starting (DESIGN §12) ----------------------------------------------------------------
    start_off = (
        "Starting clusters from chat is off: set EMR_TEMPLATES_DIR to a directory of NAME.json RunJobFlow "
        "templates (deploy/templates/analytics.json is an example), then restart the bot."
    )

    def template_problem(self, problem: TemplateProblem) -> str:
        names = ", ".join(problem.names)
        if not problem.word:
            return f"Name a template: `!emr start TEMPLATE [REASON…]` (templates: {names})."
        return f"No template called {self.inert(problem.word)} (templates: {names})."

    def start_refused(self, refused: StartRefused) -> str:
        if refused.code == "already_active":
            first = refused.clusters[0]
            return f"{self.named(first)} ({first.id}) is already {first.state}: `!emr lock {self.named(first)}`"
        active = ", ".join(f"{self.named(c)} ({c.id}, {c.state})" for c in refused.clusters)
        return (
            f"No new cluster: {len(refused.clusters)} managed clusters are active ({active}) and MAX_CLUSTERS is "
            f"{refused.limit}: use one (`!emr lock NAME`), or terminate one first."
        )

    def start_failed(self, template: Template, error: AwsError) -> str:
        """AWS refused RunJobFlow: one line with its reason, and for a denial the action and its fix."""
        text = f"Could not start {template.name}: "
        if isinstance(error, AccessDeniedError) and error.action == "iam:PassRole":
            return text + (
                f"AWS denied iam:PassRole ({error.where}): the role may pass only the two roles given to "
                "deploy/cloudformation/account-b.yaml as ClusterServiceRoleName and ClusterInstanceRoleName, and "
                f"{template.file} passes {template.service_role} (ServiceRole) and {template.instance_role} "
                "(JobFlowRole): make them match, then try again. Nothing was started."
            )
        if isinstance(error, AccessDeniedError) and error.action == "elasticmapreduce:RunJobFlow":
            tag = str(self.settings.cluster_tag) if not self.settings.cluster_tag.matches_all else "emr-chatops=true"
            return text + (
                f"AWS denied elasticmapreduce:RunJobFlow ({error.where}): allow it in the role's permission policy "
                f"for clusters tagged {tag} (its RequestTag condition must name EMR_CLUSTER_TAG; see deploy/iam/), "
                "then try again. Nothing was started."
            )
        return text + one_line(str(error)).rstrip(".") + ". Nothing was started."

    def starting(self, state: State, record: ClusterRecord, template: Template, now: datetime, *, evening: bool) -> str:
        """The reply to `!emr start`: what starts, who holds it, where the ready notice comes, and what is next."""
        hold = record.holds[0]
        where = (
            f"in {self.settings.notify_channel}"
            if self.settings.notify_channel
            else "in the bot's log (no NOTIFY_CHANNEL)"
        )
        text = (
            f"🚀 Starting {self.cluster(record)} from template {template.name} ({template.release}); "
            f"{hold.name} holds it ({self.inert(hold.reason, 200)}). It takes some minutes: the ready notice comes "
            f"{where}, and `!emr status` shows the progress."
        )
        if evening:
            text += (
                " Tonight's end of day has passed: the idle rule and hold reminders apply to it tonight, "
                "and the end of day from tomorrow on."
            )
        deadline = next_deadline(state, record, self.policy, now)
        return text + (f" Next: {self.deadline(deadline, now)}." if deadline is not None else "")

    def ready(self, effect: Ready, state: State, now: datetime) -> str:
        record, start = effect.cluster, effect.cluster.start
        assert start is not None
        text = f"✅ {self.cluster(record)} is ready after {precise(effect.took)}."
        who = self.mention(start.by, start.by_name)
        if record.holder(start.by) is not None:
            return text + f" {who}, you hold it: `!emr unlock {self.named(record)}` when you are done."
        deadline = next_deadline(state, record, self.policy, now)
        tail = f": {self.deadline(deadline, now)}" if deadline is not None else ""
        return text + f" {who}, you started it; nobody holds it now{tail}."

    def start_failure(self, record: ClusterRecord, info: ClusterInfo) -> str:
        """A cluster the bot started ended before it was ready (TERMINATED_WITH_ERRORS: EMR's reason)."""
        start = record.start
        assert start is not None
        reason = self.aws_text(info.reason) if info.reason else "EMR gave no reason"
        return (
            f"❌ {self.cluster(record)} failed to start ({info.state}): {reason}. "
            f"{self.mention(start.by, start.by_name)}, nothing is running for you: fix the cause, then "
            f"`!emr start {start.template}` again."
        )

    # -- the backstop (DESIGN §12) -------------------------------------------------------------
    def backstop_failed(self, record: ClusterRecord, wanted: int, problem: str) -> str:
        if wanted:
            return (
                f"⚠️ Could not set EMR's auto-termination policy ({wanted // 60} idle minutes) on "
                f"{self.cluster(record)}, which nobody holds: {one_line(problem)} If the bot goes down, nothing "
                "ends it. I will keep trying."
            )
        return (
            f"⚠️ Could not remove EMR's auto-termination policy from {self.cluster(record)}, held by "
            f"{self.mentions(record.holds)}: {one_line(problem)} EMR may terminate it when it has been idle for "
            f"{(self.settings.backstop_minutes or 0)} minutes although it is held. I will keep trying."
        )

    def backstop_back(self, record: ClusterRecord, wanted: int) -> str:
        now_is = f"set ({wanted // 60} idle minutes, nobody holds it)" if wanted else "removed (it is held)"
        return f"✓ EMR's auto-termination policy on {self.cluster(record)} is {now_is} now."

    # -- history ---------------------------------------------------------------------------
    def history(self, events: Sequence[Event]) -> str:
        if not events:
            return "No events yet."
        return "\n".join(self.history_line(e) for e in events)

    def history_line(self, e: Event) -> str:
        if e.who:
            who = f" by {e.who}"
        elif e.rule and e.kind in ("terminated", "warning", "failed"):
            who = f" by {self.rule_by(e.rule)}"
        elif e.kind == "cancelled" and e.rule:
            who = f" ({self.rule_by(e.rule)})"
        else:
            who = ""
        if e.kind in ("warning", "overtime") and e.detail:
            detail = f" — until {self.local(datetime.fromisoformat(e.detail))}"
        elif e.kind == "ready" and e.detail.isdigit():
            detail = f" — after {precise(timedelta(seconds=int(e.detail)))}"
        elif e.kind == "start_failed" and e.detail:
            detail = f" — {self.aws_text(e.detail, 200)}"
        elif e.kind == "reminder" and e.detail:
            detail = f" — hold ends {self.local(datetime.fromisoformat(e.detail))} unless confirmed"
        elif e.kind in ("hold", "failed") and e.detail:
            detail = f" — {self.inert(e.detail)}"
        else:
            detail = f" — {e.detail}" if e.detail else ""
        return f"{self.local(e.at, with_day=True)} {e.kind} {self.named(e)} ({e.cluster}){who}{detail}"


def money(cost: Cost) -> str:
    """``$2.33``, or ``≤$2.33`` for an upper bound (the report's cells)."""
    return f"{'≤' if cost.upper_bound else ''}{dollars(cost)}"


def dollars(cost: Cost) -> str:
    """``$2.33``: to the cent, half up (2.325 is 2.33, whatever the float sum's last bit)."""
    cents = Decimal(repr(round(cost.dollars, 6))).quantize(Decimal("0.01"), ROUND_HALF_UP)
    return f"${cents:,}"


def partial(cost: Cost, unknown: bool) -> str:
    """A cost that leaves something unknown out: ``≥$2.33`` (``$2.33+?`` over an upper bound), or ``unknown``."""
    if not unknown:
        return money(cost)
    if cost.dollars == 0:
        return "unknown"
    return f"{money(cost)}+?" if cost.upper_bound else f"≥{money(cost)}"


def hm(delta: timedelta) -> str:
    """Hours and minutes, ``12:05`` (rounded to the minute)."""
    minutes = round(delta.total_seconds() / 60)
    return f"{minutes // 60}:{minutes % 60:02d}"


def _day(day: date) -> str:
    return day.strftime("%m-%d %a")


def bar(f: Figures) -> str:
    """One cell per hour of the day, held / busy / idle / not watched, rounded so the cells add up."""
    cells: list[str] = []
    done = 0.0
    for name, mark in BAR_MARKS:
        done += getattr(f, name).total_seconds() / 3600
        cells += [mark] * (min(math.floor(done + 0.5), BAR_CELLS) - len(cells))  # half up, like money
    return "".join(cells)


def duration(delta: timedelta) -> str:
    minutes = max(0, int(delta.total_seconds() // 60))
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m" if hours else f"{minutes}m"


def precise(delta: timedelta) -> str:
    """A duration to the second, for starts: ``45s``, ``7m 12s``, ``1h 02m 05s``."""
    seconds = max(0, int(delta.total_seconds()))
    minutes, seconds = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours}h {minutes:02d}m {seconds:02d}s"
    return f"{minutes}m {seconds:02d}s" if minutes else f"{seconds}s"
