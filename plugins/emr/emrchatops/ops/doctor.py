"""``!emr doctor``: check the whole chain and say what to fix.

Each link, in order: the region, the bot's own identity (account A), a fresh
AssumeRole into account B (on a throw-away session, so the cached token cannot
hide a trust policy broken since it was issued), EMR ListClusters and
DescribeCluster, managed vs unmanaged clusters, TerminateJobFlows (as far as
it can be known without terminating: a denial the poller met is explained
against the managed tag the role's policy requires), EMR's auto-termination
policy of each managed cluster against its holds (the backstop), RunJobFlow and
iam:PassRole (as far as it can be known without starting a cluster: the roles
the templates pass), the templates, and the config. A link that cannot be
reached is "not checked", not failed. Nothing here touches the plugin state or
a cluster, and no secret is ever shown.

The notify-channel check needs the chat backend, so the plugin makes it (with
:func:`notify_check`, asking Slack through callables it passes in) and passes it in.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import date, datetime, timedelta
from typing import NamedTuple

from emrchatops.aws.adapter import EmrAdapter
from emrchatops.aws.crossaccount import CrossAccountSession, MemoryTokenStore
from emrchatops.domain.costs import NoPrice, PricesKept, PricesRead, hourly, overlay, summary
from emrchatops.domain.errors import (
    AccessDeniedError,
    AwsUnreachableError,
    CredentialsError,
    EmrChatopsError,
    one_line,
    tag_condition,
)
from emrchatops.domain.rules import ClusterInfo, State, backstop_wanted, reading_says
from emrchatops.domain.settings import Settings, TagSelector, policy_tag

OK, FAIL, WARN, SKIP = "✓", "✗", "⚠", "–"
ACTIVITY_WINDOW = timedelta(hours=1)
CLUSTER_STEPS = (
    "EMR ListClusters ({region})",
    "EMR DescribeCluster (reads the tags)",
    "Clusters",
    "EMR ListSteps (steps between two ticks)",
    "CloudWatch GetMetricData (IsIdle: YARN work)",
    "EMR auto-termination (backstop)",
    "EMR ListInstanceGroups / ListInstanceFleets (cost)",
)
START_TITLE = "EMR RunJobFlow and iam:PassRole (!emr start)"
PRICE_READER = Callable[[str, Sequence[str], date], PricesRead]  # emrchatops.aws.prices.ApiPrices

log = logging.getLogger("errbot.plugins.emr")


def _minutes(delta: timedelta) -> str:
    """``25m``, ``1h 05m`` (as the status says a duration)."""
    hours, minutes = divmod(max(0, int(delta.total_seconds() // 60)), 60)
    return f"{hours}h {minutes:02d}m" if hours else f"{minutes}m"


class Check(NamedTuple):
    """One line of ``!emr doctor``: ✓ fine, ✗ broken (with the fix), ⚠ works but risky, – not checked.

    (A NamedTuple, like the plugin's own types: errbot loads emr.py outside ``sys.modules``.)
    """

    mark: str
    title: str
    detail: str
    fix: str = ""

    def render(self) -> str:
        line = f"{self.mark} {self.title}: {self.detail}"
        return line + (f"\n    fix: {self.fix}" if self.fix else "")


def notify_check(
    channel: str | None, member_of: Callable[[str], bool | None] | None, bot_name: Callable[[], str]
) -> Check:
    """NOTIFY_CHANNEL: set, and (on Slack, *member_of* given) the bot a member of it.

    *member_of* says whether the bot is in the channel (None: Slack does not say); it raises
    if there is no such channel.
    """
    if channel is None:
        return Check(
            FAIL,
            "NOTIFY_CHANNEL",
            "not set: warnings and automatic terminations are only logged",
            "set EMR_NOTIFY_CHANNEL=#emr-alerts (and invite the bot there)",
        )
    title = f"NOTIFY_CHANNEL {channel}"
    if member_of is None:
        return Check(OK, title, "set")
    try:
        joined = member_of(channel)
    except Exception:
        log.warning("doctor: cannot resolve NOTIFY_CHANNEL %s", channel, exc_info=True)
        return Check(FAIL, title, "no such channel on Slack", "set EMR_NOTIFY_CHANNEL to an existing #channel")
    if joined is False:
        return Check(
            FAIL,
            title,
            "the bot is not a member: it cannot post there",
            f"`/invite @{bot_name()}` in {channel}",
        )
    return Check(OK, title, "the bot is a member" if joined else "set")


class Doctor:
    """Runs the checks for one plugin configuration."""

    def __init__(
        self,
        settings: Settings,
        session: CrossAccountSession,
        clock: Callable[[], datetime],
        prices: PRICE_READER | None = None,
        prices_kept: PricesKept | None = None,
    ) -> None:
        self.settings = settings
        self.session = session
        self.clock = clock
        self.prices = prices  # PRICES=api: the bot's reader of AWS's Price List
        self.prices_kept = prices_kept  # … and what it has read so far
        self._types_seen: list[str] = []  # the instance types of the managed clusters (read by the cost check)

    def report(self, state: State, notify: Check) -> str:
        """The whole reply: a header, one line per check (with its fix), and a verdict."""
        s = self.settings
        header = (
            f"EMR doctor: role {s.role_arn} (ExternalId {'set' if s.external_id else 'not set'}), "
            f"region {s.region}, tag `{s.cluster_tag}`" + (f", endpoint {s.endpoint_url}" if s.endpoint_url else "")
        )
        checks = self.checks(state, notify)
        lines = [header, *(check.render() for check in checks)]
        problems = sum(check.mark == FAIL for check in checks)
        if problems:
            lines.append(
                f"{problems} problem{'s' if problems > 1 else ''}: fix the ✗ lines (IAM changes apply at once; "
                "a changed /etc/emr-chatops/env needs `systemctl restart emr-chatops`), then `!emr doctor` again."
            )
        else:
            lines.append("All checks passed.")
        return "\n".join(lines)

    def checks(self, state: State, notify: Check) -> list[Check]:
        """Each link of the chain, in order; a link that cannot be reached is "not checked", not failed.

        The AssumeRole is a fresh one on a throw-away session (the cached token would hide a trust
        policy broken since it was issued); nothing here touches the plugin state or a cluster.
        """
        s = self.settings
        checks: list[Check] = []

        region = self._region_check()
        checks.append(region)
        reachable = region.mark != FAIL or s.endpoint_url is not None  # a made-up region has no endpoint

        base: dict[str, str] | None = None
        title = "Bot identity (account A, sts:GetCallerIdentity)"
        if not reachable:
            checks.append(Check(SKIP, title, "not checked: fix REGION first"))
        else:
            try:
                base = self.session.base_identity()
                checks.append(Check(OK, title, f"account {base['account']}, {base['arn']}"))
            except EmrChatopsError as error:
                checks.append(Check(FAIL, title, one_line(str(error)), self._identity_fix(error)))

        probe = CrossAccountSession(self.session.target, MemoryTokenStore(), clock=lambda: self.clock())
        title = f"AssumeRole into account {s.account_id}"
        assumed = False
        if base is None:
            checks.append(Check(SKIP, title, "not checked: the bot's own identity must work first"))
        else:
            try:
                # GetCallerIdentity needs no permission: it tests the AssumeRole alone.
                who = probe.call("sts", "get_caller_identity", "sts:GetCallerIdentity")
                assumed = True
                checks.append(Check(OK, title, f"{who['Arn']}, {s.session_seconds} s sessions"))
            except EmrChatopsError as error:
                checks.append(Check(FAIL, title, *self._assume_problem(error, base)))

        checks.extend(
            self._cluster_checks(probe, state) if assumed else self._skipped(CLUSTER_STEPS, "AssumeRole failed", state)
        )
        checks.append(self._prices_check(identity_works=base is not None))
        checks.extend(self._config_checks(notify))
        return checks

    def _prices_check(self, *, identity_works: bool) -> Check:
        """PRICES=api: one read of the managed clusters' prices from AWS's Price List, with the bot's own identity."""
        s = self.settings
        if s.prices_api is None or self.prices is None:
            table = f"PRICES_FILE {s.prices_file}" if s.prices_file else "the shipped price table"
            estimated = any(p.estimated for types in s.prices.regions.values() for p in types.values())
            note = (
                ", whose prices are estimates (status and report say so); to read AWS's own: EMR_PRICES=api, "
                "or a PRICES_FILE written by `make prices` (docs/operator-guide.md, Prices)"
                if estimated
                else ""
            )
            return Check(
                SKIP,
                "AWS's Price List (PRICES=api)",
                f"not used (PRICES=file): costs come from {table} of {s.prices.date.isoformat()}{note}",
            )
        title = f"AWS's Price List (pricing:GetProducts, endpoint {s.prices_api})"
        if not identity_works:
            return Check(SKIP, title, "not checked: the bot's own identity must work first")
        types = self._types_seen or ["m5.xlarge"]
        try:
            read = self.prices(s.region, types, self.clock().date())
        except EmrChatopsError as error:
            if isinstance(error, AccessDeniedError) or getattr(error, "code", None) == "AccessDenied":
                fix = (
                    "allow pricing:GetProducts to the bot's own identity (account A): the EmrChatopsReadPrices "
                    "statement of deploy/iam/account-a-assume.json, or redeploy deploy/cloudformation/account-a.yaml"
                )
            elif isinstance(error, AwsUnreachableError):
                fix = f"check outbound HTTPS from the host to api.pricing.{s.prices_api}.amazonaws.com"
            else:
                fix = "see the bot's log; meanwhile costs stay at the last prices read"
            return Check(FAIL, title, one_line(str(error)), fix)
        found = [
            f"{t} in {s.region} EC2 ${p.ec2:g} + EMR ${p.emr:g} per hour"
            for t in types
            if (p := read.prices.get(s.region, {}).get(t)) is not None
        ]
        kept = self.prices_kept
        if kept is None or kept.read_at is None:
            last = "the bot has not read any yet (at its next tick, then daily)"
        else:
            last = f"the bot read them {self._when(kept.read_at)}"
        if kept is not None and kept.failure is not None and kept.tried_at is not None:
            last += f"; its last read failed {self._when(kept.tried_at)}: {kept.failure}"
        if read.missing:
            return Check(
                WARN,
                title,
                "; ".join([*found, *(str(m) for m in read.missing)]) + f"; {last}",
                "those costs come from the price table (said estimated when it is) or are unknown",
            )
        return Check(OK, title, f"{'; '.join(found)}; {last}")

    def _when(self, moment: datetime) -> str:
        local = moment.astimezone(self.settings.timezone)
        return f"{local:%Y-%m-%d %H:%M} ({self.settings.timezone.key})"

    def _region_check(self) -> Check:
        s = self.settings
        title = f"Region {s.region}"
        partition = s.role_arn.split(":")[1]
        regions = set(self.session.available_regions("emr"))  # the SDK's endpoint data, offline
        if not regions:
            return Check(SKIP, title, f"not checked: the SDK knows no EMR region in partition {partition}")
        if s.region not in regions:
            area = s.region.rsplit("-", 1)[0]  # ap-northeast-9 -> ap-northeast
            near = sorted(r for r in regions if r.startswith(area + "-")) or sorted(
                r for r in regions if r.split("-")[0] == area.split("-")[0]
            )
            return Check(
                FAIL,
                title,
                f"EMR is not offered in {s.region} (partition {partition})",
                f"set EMR_REGION to the cluster's region, e.g. {', '.join(near[:4])}",
            )
        return Check(OK, title, f"EMR is offered there (partition {partition})")

    def _cluster_checks(self, probe: CrossAccountSession, state: State) -> list[Check]:
        s = self.settings
        checks: list[Check] = []
        title = CLUSTER_STEPS[0].format(region=s.region)
        try:
            active = EmrAdapter(probe, TagSelector(None, None)).list_managed()  # every active cluster
        except EmrChatopsError as error:
            checks.append(Check(FAIL, title, *self._emr_problem(error)))
            return checks + self._skipped(CLUSTER_STEPS[1:], "ListClusters failed", state)
        checks.append(Check(OK, title, f"{len(active)} active cluster{'' if len(active) == 1 else 's'}"))

        title = CLUSTER_STEPS[1]
        managed = active
        if s.cluster_tag.matches_all:
            checks.append(Check(SKIP, title, "not needed: CLUSTER_TAG is `*`"))
        elif not active:
            checks.append(Check(SKIP, title, "not checked: no active cluster to describe"))
        else:
            try:
                managed = EmrAdapter(probe, s.cluster_tag).list_managed()  # a fresh tag cache: describes each
            except EmrChatopsError as error:
                checks.append(Check(FAIL, title, *self._emr_problem(error)))
                return checks + self._skipped(CLUSTER_STEPS[2:], "DescribeCluster failed", state)
            checks.append(Check(OK, title, f"read the tags of {len(active)} cluster{'' if len(active) == 1 else 's'}"))

        checks.append(self._managed_check(active, managed))
        checks.append(self._steps_check(probe, managed))
        checks.append(self._instances_check(probe, managed))
        checks.append(self._activity_check(probe, managed))
        checks.append(self._backstop_check(probe, managed, state))
        checks.append(self._terminate_check(state, probe))
        checks.append(self._start_check())
        return checks

    def _backstop_check(self, probe: CrossAccountSession, managed: list[ClusterInfo], state: State) -> Check:
        """Each managed cluster's AutoTerminationPolicy (GetAutoTerminationPolicy) against its holds:
        held, none; unheld, IdleTimeout = BACKSTOP_MINUTES (DESIGN §12)."""
        title = CLUSTER_STEPS[5]
        seconds = self.settings.backstop_seconds
        if seconds is None:
            return Check(
                WARN,
                title,
                "BACKSTOP_MINUTES off: if the bot is down, an unheld cluster runs until someone terminates it",
                "set EMR_BACKSTOP_MINUTES=180 (the role needs elasticmapreduce:Put/Get/RemoveAutoTerminationPolicy)",
            )
        if not managed:
            return Check(SKIP, title, "not checked: no managed cluster")
        adapter = EmrAdapter(probe, self.settings.cluster_tag)
        mismatches: list[str] = []
        pending = failed = outside = 0
        for cluster in managed:
            try:
                held_by_aws = adapter.backstop(cluster.id)
            except EmrChatopsError as error:
                detail, fix = self._emr_problem(error)
                return Check(FAIL, title, detail, fix)
            record = state.clusters.get(cluster.id)
            holds = record.holds if record is not None else ()
            wanted = backstop_wanted(record, seconds) if record is not None else seconds
            if (held_by_aws or 0) == wanted:
                continue
            has = f"an idle timeout of {held_by_aws // 60} min" if held_by_aws else "no auto-termination policy"
            should = "none (someone holds it)" if holds else f"{seconds // 60} min (nobody holds it)"
            note = ""
            if record is None or record.backstop != backstop_wanted(record, seconds):
                if record is not None and record.backstop_failure:
                    failed += 1
                    note = f"; the bot's last change failed: {record.backstop_failure}, it keeps trying"
                else:
                    pending += 1
                    note = "; the poller sets it at its next tick"
            else:
                outside += 1
                note = "; changed outside the bot"
            mismatches.append(f"{cluster.name} ({cluster.id}) has {has}, should have {should}{note}")
        if not mismatches:
            return Check(
                OK,
                title,
                f"matches the holds of {len(managed)} managed cluster{'' if len(managed) == 1 else 's'} "
                f"(unheld: {seconds // 60} idle minutes; held: none)",
            )
        required = policy_tag(self.settings.cluster_tag)
        if failed:
            fix = (
                f"allow elasticmapreduce:PutAutoTerminationPolicy and RemoveAutoTerminationPolicy on clusters tagged "
                f"{required} (deploy/iam/account-b-permissions.json), and see the announcement and the bot's log"
            )
        elif outside:
            fix = (
                "`aws emr put-auto-termination-policy --cluster-id j-… --auto-termination-policy "
                f"IdleTimeout={seconds}` on an unheld one, `aws emr remove-auto-termination-policy --cluster-id j-…` "
                "on a held one (or `!emr lock` then `!emr unlock` it)"
            )
        else:
            fix = ""
        mark = WARN if pending and not failed and not outside else FAIL
        return Check(mark, title, "; ".join(mismatches), fix)

    def _start_check(self) -> Check:
        """RunJobFlow and iam:PassRole cannot be probed (no dry run), so: what the templates and the policy say."""
        templates = self.settings.templates
        if not templates:
            return Check(SKIP, START_TITLE, "not needed: TEMPLATES_DIR is not set (`!emr start` is off)")
        roles = sorted({t.service_role for t in templates}), sorted({t.instance_role for t in templates})
        required = policy_tag(self.settings.cluster_tag)
        return Check(
            SKIP,
            START_TITLE,
            "not checked (only starting a cluster would tell); deploy/iam/account-b-permissions.json allows "
            f"RunJobFlow for clusters tagged {required} and iam:PassRole on two roles, to EMR and EC2 only: the "
            f"templates pass {', '.join(roles[0])} (ServiceRole) and {', '.join(roles[1])} (JobFlowRole), which "
            "must be account-b.yaml's ClusterServiceRoleName and ClusterInstanceRoleName. `!emr start` names a denial",
        )

    def _activity_check(self, probe: CrossAccountSession, managed: list[ClusterInfo]) -> Check:
        """IsIdle through the same session: readable (✓), denied (✗), or no datapoints yet (⚠)."""
        title = CLUSTER_STEPS[4]
        if self.settings.activity == "off":
            return Check(
                WARN,
                title,
                "ACTIVITY=off: work in a Spark shell or a notebook on a WAITING cluster is not seen, "
                "so an unheld cluster can be terminated under it",
                "set EMR_ACTIVITY=cloudwatch (the role needs cloudwatch:GetMetricData)",
            )
        if not managed:
            return Check(SKIP, title, "not checked: no managed cluster to read IsIdle of")
        try:
            readings = EmrAdapter(probe, self.settings.cluster_tag).read_activity(
                [c.id for c in managed], self.clock(), ACTIVITY_WINDOW
            )
        except EmrChatopsError as error:
            detail, fix = self._emr_problem(error)
            return Check(FAIL, title, f"{detail} Until fixed the idle rule goes by the cluster state alone", fix)
        # What each reading says is the rules' own decision: a datapoint too old to count is not activity.
        now = self.clock()
        says = {c.id: reading_says(readings.get(c.id), now) for c in managed}
        silent = [c.name for c in managed if says[c.id] == "none"]
        if len(silent) == len(managed):
            return Check(
                WARN,
                title,
                f"readable, but no IsIdle datapoint in the last hour for {', '.join(silent)}: activity unknown, "
                "the idle rule goes by the cluster state and steps",
                "EMR publishes IsIdle every 5 minutes once a cluster runs: wait 10 minutes; if it stays empty, "
                "check that EMR_REGION is the clusters' region",
            )
        stopped = [
            f"{c.name} (no datapoint since {reading.latest_at.astimezone(self.settings.timezone):%H:%M}, "
            f"{_minutes(now - reading.latest_at)} ago)"
            for c in managed
            if says[c.id] == "stale" and (reading := readings.get(c.id)) is not None
        ]
        seen = ", ".join(f"{c.name} {says[c.id]}" for c in managed if says[c.id] in ("busy", "idle"))
        if stopped:
            return Check(
                WARN,
                title,
                f"readable, but IsIdle stopped for {', '.join(stopped)}: activity unknown, the idle rule goes by "
                "the cluster state and steps" + (f"; IsIdle read: {seen}" if seen else ""),
                "EMR publishes IsIdle every 5 minutes from the cluster's primary node: check the cluster's health "
                "(EMR console, the primary node's load); meanwhile `!emr lock` a cluster you work on",
            )
        return Check(
            OK, title, f"IsIdle read: {seen}" + (f"; no datapoint yet for {', '.join(silent)}" if silent else "")
        )

    def _steps_check(self, probe: CrossAccountSession, managed: list[ClusterInfo]) -> Check:
        title = CLUSTER_STEPS[3]
        if not managed:
            return Check(SKIP, title, "not checked: no managed cluster to read the steps of")
        try:
            EmrAdapter(probe, self.settings.cluster_tag).latest_step(managed[0].id)
        except EmrChatopsError as error:
            return Check(FAIL, title, *self._emr_problem(error))
        return Check(
            OK, title, f"read the steps of {managed[0].name}: a step between two ticks restarts the idle clock"
        )

    def _instances_check(self, probe: CrossAccountSession, managed: list[ClusterInfo]) -> Check:
        """What the managed clusters run, and whether the price table has a price for each (DESIGN §13)."""
        title = CLUSTER_STEPS[6]
        s = self.settings
        table = f"PRICES_FILE {s.prices_file}" if s.prices_file else "the shipped price table"
        dated = f"{table} of {s.prices.date.isoformat()}"
        prices = s.prices
        kept = self.prices_kept
        if kept is not None and kept.table is not None:  # PRICES=api: what the bot read, over the table
            prices = overlay(s.prices, kept)
            dated = f"AWS's Price List, read {kept.table.date.isoformat()}, over {dated}"
        if not managed:
            return Check(SKIP, title, f"not checked: no managed cluster ({dated})")
        adapter = EmrAdapter(probe, s.cluster_tag)
        seen: list[str] = []
        for cluster in managed:
            try:
                composition = adapter.instances(cluster.id)
            except EmrChatopsError as error:
                detail, fix = self._emr_problem(error)
                return Check(FAIL, title, f"{detail} Until fixed !emr status shows no cost", fix)
            self._types_seen = list(dict.fromkeys([*self._types_seen, *(g.instance_type for g in composition)]))
            rate = hourly(prices, s.region, composition)
            if isinstance(rate, NoPrice):
                return Check(
                    WARN,
                    title,
                    f"{cluster.name} runs {summary(composition)}: no price for {rate.instance_type} in "
                    f"{rate.region} in {dated}, so its cost is shown as unknown",
                    "add it to a copy of plugins/emr/emrchatops/domain/prices.json and set EMR_PRICES_FILE to it (docs/operator-guide.md, Prices)",
                )
            bound = "≤ " if rate.upper_bound else ""
            estimated = ", estimated" if rate.estimated else ""
            seen.append(f"{cluster.name} {summary(composition)} {bound}${rate.dollars:.2f}/h{estimated}")
        return Check(OK, title, f"{'; '.join(seen)} ({dated})")

    def _managed_check(self, active: list[ClusterInfo], managed: list[ClusterInfo]) -> Check:
        s = self.settings
        title = CLUSTER_STEPS[2]
        unmanaged = len(active) - len(managed)
        if managed:
            names = ", ".join(f"{c.name} {c.state}" for c in managed)
            return Check(OK, title, f"{len(managed)} managed ({names}), {unmanaged} unmanaged (not touched)")
        if active:
            key, value = s.cluster_tag.key, s.cluster_tag.value
            return Check(
                FAIL,
                title,
                f"0 managed, {unmanaged} unmanaged (not touched): no active cluster carries the tag {s.cluster_tag}",
                f"tag the shared cluster (`aws emr add-tags --resource-id j-… --tags {key}={value or 'true'}` "
                "in account B), or set EMR_CLUSTER_TAG to the tag it has",
            )
        return Check(
            FAIL,
            title,
            f"no active cluster at all in account {s.account_id}, {s.region}",
            f"if the cluster is running, it is in another region (EMR_REGION) or account (EMR_ROLE_ARN); "
            f"otherwise nothing to do until one starts (tagged {s.cluster_tag})",
        )

    def _terminate_check(self, state: State, probe: CrossAccountSession | None = None) -> Check:
        """TerminateJobFlows cannot be probed (no dry run; a call on a made-up id proves nothing), so:
        what the poller has seen, or what the shipped policy says."""
        title = "EMR TerminateJobFlows"
        required = policy_tag(self.settings.cluster_tag)
        for record in state.clusters.values():
            failure = record.doomed.failure if record.doomed is not None else None
            if not failure:
                continue
            if failure == "AccessDenied" and (tags := self._denied_tags(probe, record.id)) is not None:
                # The role may change only clusters carrying its tag, and AWS's answer does not say whether
                # the tag or the action is missing: the cluster's tags tell.
                failure = f"AccessDenied: {tag_condition('terminate', str(required), tags)}"
                fix = (
                    f"tag it (`aws emr add-tags --resource-id {record.id} --tags {required.key}="
                    f"{required.value or '…'}`) if the bot should manage it; or make the role's tag condition name "
                    "EMR_CLUSTER_TAG (ClusterTagKey and ClusterTagValue of deploy/cloudformation/account-b.yaml; "
                    "docs/operator-guide.md, IAM)"
                )
            elif failure == "AccessDenied":
                fix = (
                    f"allow elasticmapreduce:TerminateJobFlows on clusters tagged {required} in the role's "
                    "permission policy (deploy/iam/account-b-permissions.json; its tag condition must name "
                    "EMR_CLUSTER_TAG)"
                )
            elif failure == "TerminationProtected":
                fix = (
                    "turn termination protection off "
                    "(`aws emr modify-cluster-attributes --cluster-id … --no-termination-protected`)"
                )
            else:
                fix = "see the bot's log and `!emr history`; the poller keeps retrying"
            return Check(
                FAIL, title, f"the automatic termination of {record.name} ({record.id}) failed: {failure}", fix
            )
        return Check(
            SKIP,
            title,
            "not checked (only terminating a cluster would tell); deploy/iam/account-b-permissions.json allows it "
            f"on the clusters of account {self.settings.account_id} in {self.settings.region} tagged {required}, "
            "and a denial is named by `!emr terminate` and announced by the poller",
        )

    def _denied_tags(self, probe: CrossAccountSession | None, cluster_id: str) -> dict[str, str] | None:
        """The tags of a cluster whose termination IAM denied, when it lacks the tag the role's policy
        requires (so the tag condition explains the denial); None when it carries it, or they are unknown."""
        if probe is None:
            return None
        try:
            tags = EmrAdapter(probe, self.settings.cluster_tag).tags(cluster_id)
        except EmrChatopsError:
            return None
        return None if policy_tag(self.settings.cluster_tag).matches(tags) else tags

    def _skipped(self, steps: tuple[str, ...], why: str, state: State) -> list[Check]:
        region = self.settings.region
        return [Check(SKIP, step.format(region=region), f"not checked: {why}") for step in steps] + [
            self._terminate_check(state),
            self._start_check(),
        ]

    def _config_checks(self, notify: Check) -> list[Check]:
        s = self.settings
        checks = [notify]
        if s.cluster_tag.matches_all:
            checks.append(
                Check(
                    WARN,
                    "CLUSTER_TAG `*`",
                    f"every active cluster of account {s.account_id} in {s.region} is managed, and terminated when idle",
                    "set EMR_CLUSTER_TAG=emr-chatops=true and tag the shared cluster, unless that is really meant "
                    "(the shipped role refuses to terminate a cluster without that tag: docs/operator-guide.md, IAM, the `*` variant)",
                )
            )
        eod = f"end of day {s.end_of_day:%H:%M} {s.timezone.key}" if s.end_of_day else "end of day off"
        rules = (
            f"idle {s.idle_minutes} min, {eod}, warning {s.warn_minutes} min before, poll every {s.poll_seconds:g} s"
        )
        checks.append(Check(OK, "Rules", rules))
        checks.append(self._templates_check())
        if s.end_of_day is None:
            checks.append(
                Check(WARN, "END_OF_DAY off", "a held cluster runs all night", "set EMR_END_OF_DAY=19:00 (local time)")
            )
        if s.warn_minutes and s.poll_seconds > s.warn_minutes * 60:
            checks.append(
                Check(
                    WARN,
                    "POLL_SECONDS",
                    f"{s.poll_seconds:g} s is longer than the {s.warn_minutes} min warning: it may come late",
                    "lower EMR_POLL_SECONDS",
                )
            )
        return checks

    def _templates_check(self) -> Check:
        s = self.settings
        title = "Templates (!emr start)"
        if not s.templates:
            return Check(SKIP, title, "TEMPLATES_DIR not set: `!emr start` is off")
        listed = ", ".join(f"{t.name} (cluster {t.cluster_name}, {t.release})" for t in s.templates)
        return Check(OK, f"{title} {s.templates_dir}", f"{listed}; at most {s.max_clusters} managed clusters at once")

    def _identity_fix(self, error: EmrChatopsError) -> str:
        if isinstance(error, AwsUnreachableError):
            return (
                f"the host cannot reach AWS STS in {self.settings.region}: "
                "check outbound HTTPS (proxy, firewall, VPC endpoint)"
            )
        if isinstance(error, CredentialsError) or any(
            code in str(error) for code in ("InvalidClientTokenId", "SignatureDoesNotMatch", "ExpiredToken")
        ):
            return (
                "give the bot valid credentials of account A: the host's instance profile (preferred), or "
                "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY in /etc/emr-chatops/env; then `systemctl restart emr-chatops`"
            )
        return "see the bot's log for the full AWS answer"

    def _assume_problem(self, error: EmrChatopsError, base: dict[str, str]) -> tuple[str, str]:
        s = self.settings
        if isinstance(error, AccessDeniedError):
            return (
                f"AWS denied sts:AssumeRole on {s.role_arn} to {base['arn']}",
                f"the role must exist in account {s.account_id} (EMR_ROLE_ARN = the RoleArn output of "
                "deploy/cloudformation/account-b.yaml), its trust policy must name account "
                f"{base['account']} and the ExternalId (EMR_EXTERNAL_ID), and account A's policy "
                "(deploy/cloudformation/account-a.yaml) must allow sts:AssumeRole on exactly this ARN",
            )
        if isinstance(error, AwsUnreachableError):
            return one_line(str(error)), "check outbound HTTPS from the host to AWS STS"
        if ":assumed-role/" in base["arn"] and s.session_seconds > 3600:
            # e.g. an EC2 instance profile: AWS refuses chained sessions longer than an hour.
            return one_line(str(error)), "role chaining is capped at one hour: set EMR_SESSION_SECONDS=3600"
        return one_line(str(error)), "see the bot's log for the full AWS answer"

    def _emr_problem(self, error: EmrChatopsError) -> tuple[str, str]:
        if isinstance(error, AccessDeniedError):
            return (
                f"AWS denied {error.action}",
                f"allow {error.action} in the role's permission policy in account {self.settings.account_id} "
                "(deploy/iam/account-b-permissions.json; the account-b.yaml stack has it, for the clusters of "
                f"the stack's own region: deploy it in {self.settings.region})",
            )
        if isinstance(error, AwsUnreachableError):
            return one_line(str(error)), f"check outbound HTTPS from the host to EMR in {self.settings.region}"
        return one_line(str(error)), "see the bot's log for the full AWS answer"
