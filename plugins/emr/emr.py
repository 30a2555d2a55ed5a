"""EMR: share the team's Amazon EMR cluster from chat.

The plugin is Errbot wiring: a command parses its arguments, asks one
decision or transition of the pure layers, and hands the result to the view.

* :mod:`emr_settings` validates the ``EMR`` dict of the bot config;
* :mod:`crossaccount` holds the AssumeRole session into the cluster account,
  its token kept in this plugin's storage;
* :mod:`emr_templates` reads and validates the cluster templates of ``!emr start``;
* :mod:`emr_adapter` lists, re-reads, starts and terminates clusters, reads steps,
  and sets EMR's own auto-termination policy (the backstop);
* :mod:`emr_state`, :mod:`emr_rules`, :mod:`emr_decisions` decide (pure
  functions of state, words and ``now``);
* :mod:`emr_costs` and :mod:`emr_ledger` price the clusters and keep the usage
  ledger behind ``!emr report`` (pure; the ledger is stored under ``ledger``);
* :mod:`emr_view` words and renders every reply and announcement, :mod:`emr_chart`
  draws the report's chart for Slack;
* :mod:`emr_doctor` runs the checks of ``!emr doctor``.

All state lives in the plugin storage under ``state`` (versioned plain data,
see :class:`emr_state.State`) and ``sts`` (the temporary credentials). Every
read-modify-write of it happens under ``self._lock``: commands run on Errbot's
thread pool and the poller on its own thread.
"""

from __future__ import annotations

import contextlib
import fnmatch
import functools
import importlib
import itertools
import logging
import os
import re
import sys
import threading
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any

from errbot import BotPlugin, botcmd

# Dependency order: a module comes after the ones it imports.
_SIBLINGS = (
    "emr_errors",
    "emr_costs",
    "emr_templates",
    "emr_settings",
    "emr_state",
    "emr_ledger",
    "emr_rules",
    "emr_decisions",
    "crossaccount",
    "emr_adapter",
    "emr_view",
    "emr_chart",
    "emr_doctor",
    "emr_clicks",
    "emr_blocks",
    "emr_slack",
)


def _reload_siblings_if_changed() -> None:
    """Make ``!plugin reload EMR`` pick up an upgrade of the whole package.

    Errbot re-executes this file on reload, but the sibling modules are plain
    top-level imports cached in ``sys.modules``: without this, a reload after
    ``git pull`` would keep running the old rules, adapter and session code.
    When any sibling changed on disk since this file last imported it (or a
    new sibling appeared), all of them are reloaded in dependency order (so
    none keeps another's old classes).
    """
    loaded = [sys.modules[name] for name in _SIBLINGS if name in sys.modules]
    # The file's own mtime is compared, not the clock: tests move wall-clock time.
    if any(_mtime(m) != getattr(m, "_emr_mtime", _mtime(m)) for m in loaded):
        for name in _SIBLINGS:
            if name in sys.modules:
                importlib.reload(sys.modules[name])


def _mtime(module: Any) -> float:
    return os.stat(module.__file__).st_mtime


def _stamp_siblings() -> None:
    for name in _SIBLINGS:
        module = sys.modules[name]
        module.__dict__["_emr_mtime"] = _mtime(module)  # remembered on the module itself


_reload_siblings_if_changed()

import emr_slack
from crossaccount import CrossAccountSession, RoleTarget, Token, utc_now
from emr_adapter import EmrAdapter, Listing, policy_tag
from emr_blocks import message_blocks
from emr_chart import preload as preload_chart
from emr_chart import render as render_chart
from emr_clicks import Buttons, buttons_for
from emr_decisions import (
    Denied,
    NameProblem,
    NoneRunning,
    TemplateProblem,
    active_clusters,
    choose_template,
    hold_to_release,
    may_ask_overtime,
    may_start,
    may_terminate,
    name_cluster,
)
from emr_doctor import FAIL, OK, Check, Doctor
from emr_errors import (
    AwsError,
    ConfigError,
    EmrChatopsError,
    NoClusterError,
    RefusedError,
    UnknownClusterError,
    UsageError,
    one_line,
)
from emr_ledger import (
    REPORT_MAX_DAYS,
    CostSoFar,
    Ledger,
    cost_so_far,
    ended,
    follow,
    instances_due,
    instances_seen,
    seen,
    watch,
)
from emr_ledger import (
    bounded as ledger_bounded,
)
from emr_ledger import (
    report as usage_report,
)
from emr_rules import (
    PERIOD as ACTIVITY_PERIOD,
)
from emr_rules import (
    Cancelled,
    Expire,
    Policy,
    Ready,
    Remind,
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
    observe,
    overtime_until,
    plan_tick,
    refused_termination,
    set_overtime,
    settle,
    started,
    steps_seen,
    terminated,
    termination_failed,
    termination_refusal,
    to_recheck,
)
from emr_settings import Settings, from_mapping, parse_hhmm
from emr_state import REASON_LIMIT, ClusterInfo, ClusterRecord, State
from emr_templates import Template, start_tags
from emr_view import View, typed_from_slack

_stamp_siblings()

log = logging.getLogger("errbot.plugins.emr")

SUBCOMMANDS = ("status", "start", "lock", "unlock", "terminate", "overtime", "history", "report", "doctor")
REPORT_DEFAULT_DAYS = 7
HISTORY_DEFAULT = 10
HISTORY_MAX = 50
ARGS_LIMIT = 1000
STATE_KEY = "state"
TOKEN_KEY = "sts"  # noqa: S105 - a storage key name, not a secret
LEDGER_KEY = "ledger"
INSTANCES_RETRY = ACTIVITY_PERIOD  # a failed read of a cluster's instances is retried after 5 minutes
# Backend modes that speak Slack markup (errbot-backend-slackv3 says "slackv3").
SLACK_MODES = frozenset({"slack", "slackv3", "slack_rtm"})
SLACK_MENTION_RE = re.compile(r"<@([A-Z0-9]+)(?:\|[^>]*)?>")
HHMM_WORD_RE = re.compile(r"[0-9]{1,2}:[0-9]{2}")  # ASCII digits only: int() takes other scripts' digits too
COUNT_WORD_RE = re.compile(r"[0-9]{1,3}")


def answers(method: Callable[..., str | None]) -> Callable[..., str | None]:
    """Turn domain errors into one-line replies, and anything else into a short apology.

    Errbot would otherwise answer an exception with its message (possibly a
    multi-line botocore text); the traceback goes to the log only.
    """

    @functools.wraps(method)
    def wrapper(self: EMR, msg: Any, args: str) -> str | None:
        try:
            if self._on_slack:  # what the person typed, not Slack's markup of it (escaped once, when shown)
                args = typed_from_slack(args, self._slack_name)
            if len(args) > ARGS_LIMIT:
                raise UsageError(f"That is {len(args)} characters of arguments; the limit is {ARGS_LIMIT}.")
            return method(self, msg, args)
        except EmrChatopsError as error:
            return f"✗ {one_line(str(error))}"
        except Exception:
            log.exception("!emr command failed: %s", method.__name__)
            return "✗ Something unexpected went wrong (details are in the bot's log); nothing was changed."

    return wrapper


class EMR(BotPlugin):
    """Share the team's EMR cluster: say when you use it, and it is terminated when nobody does."""

    clock: Callable[[], datetime] = staticmethod(utc_now)  # the plugin's one clock; tests may inject another

    # -- lifecycle --------------------------------------------------------------------
    def activate(self) -> None:
        raw = getattr(self.bot_config, "EMR", None)
        if not isinstance(raw, dict):
            raise ConfigError("EMR", "the bot config has no EMR dict (see config.py)")
        self.settings: Settings = from_mapping(raw)
        self.policy = Policy(
            idle_minutes=self.settings.idle_minutes,
            warn_minutes=self.settings.warn_minutes,
            end_of_day=self.settings.end_of_day,
            timezone=self.settings.timezone,
            remind_minutes=self.settings.hold_remind_minutes,
            grace_minutes=self.settings.hold_grace_minutes,
        )
        self._lock = threading.RLock()
        self._poll_failure: str | None = None
        self._state: State | None = None  # decoded copy of the stored state, see _load
        self._ledger: Ledger | None = None  # the usage ledger's latest fold, see _load_ledger
        self._ledger_stored: Ledger | None = None  # … and what storage holds
        self._instances_tried: dict[str, tuple[str, datetime]] = {}  # cluster id -> (state, when) of a failed read
        self._instances_lock = threading.Lock()
        # Listings are numbered when they start; one older than the last folded is stale (see _refresh).
        self._listings = itertools.count(1)
        self._folded = 0
        self._rechecked: dict[str, datetime] = {}  # cluster id -> last DescribeCluster of an unlisted record
        self._activity_read_at: datetime | None = None  # the last GetMetricData (at most one per 5 minutes)
        self._activity_failure: str | None = None  # CloudWatch's last failure, announced once
        # One `!emr start` at a time: two at the same moment must not both see "nothing active" and start two.
        self._start_lock = threading.Lock()
        # Backstop changes one at a time, each on the latest state: the last one to run leaves EMR's policy
        # matching the holds, whatever order concurrent lock/unlock commands ran in.
        self._backstop_lock = threading.Lock()
        self._backstop_tried: dict[str, datetime] = {}  # cluster id -> the last backstop request (retries)
        self._generation = getattr(self, "_generation", 0) + 1  # this activation's poller (see tick)
        super().activate()
        target = RoleTarget(
            role_arn=self.settings.role_arn,
            region=self.settings.region,
            external_id=self.settings.external_id,
            endpoint_url=self.settings.endpoint_url,
            session_seconds=self.settings.session_seconds,
        )
        self.session = CrossAccountSession(target, _PluginTokenStore(self), clock=lambda: self.clock())
        self.adapter = EmrAdapter(self.session, self.settings.cluster_tag, clock=lambda: self.clock())
        with self._lock:
            state = State.from_dict(self.get(STATE_KEY))  # refuse to start on state we cannot read (or a newer format)
            if LEDGER_KEY not in self:  # an upgrade: the ledger starts from the state's clusters and holds
                self[LEDGER_KEY] = Ledger.from_dict(None, state).to_dict()
            Ledger.from_dict(self.get(LEDGER_KEY))  # and on a usage ledger we cannot read
        self.start_poller(self.settings.poll_seconds, self.tick, args=(self._generation,))
        if self._on_slack:  # the report's chart: matplotlib imported meanwhile, not at the first report
            threading.Thread(target=preload_chart, name="emr-chart-preload", daemon=True).start()
        # Slack buttons: one click listener on the backend's Socket Mode client (none on other backends).
        emr_slack.attach(self._bot, emr_slack.Clicks(self))
        log.info(
            "EMR plugin active: role %s, region %s, tag %s, poll every %ss",
            self.settings.role_arn,
            self.settings.region,
            self.settings.cluster_tag,
            self.settings.poll_seconds,
        )

    def deactivate(self) -> None:
        emr_slack.detach(self._bot)  # no click reaches a deactivated plugin
        with contextlib.suppress(ValueError, AttributeError):  # activation failed before the poller started
            self.stop_poller(self.tick, args=(self._generation,))
        # Errbot only cancels the timers when pollers are left over; stop_poller
        # just emptied that list, so cancel the pending timer here ourselves.
        for timer in list(self.current_timers):
            timer.cancel()
        lock = getattr(self, "_lock", None)
        if lock is not None:
            with lock:  # let a tick in flight finish its state change before the storage closes
                if getattr(self, "_ledger", None) is not None:
                    with contextlib.suppress(Exception):  # a clean stop keeps the latest fold (best effort)
                        self._write_ledger()
                super().deactivate()
        else:
            super().deactivate()

    # -- state ------------------------------------------------------------------------
    def _load(self) -> State:
        """The current state (call under ``self._lock``).

        Storage is the source of truth, but this plugin is its only writer, so
        the last state saved (or read) is kept decoded: a command then pays for
        one storage write instead of a read-decode-encode-write round.
        """
        if self._state is None:
            self._state = State.from_dict(self.get(STATE_KEY))
        return self._state

    def _save(self, state: State) -> None:
        self[STATE_KEY] = state.to_dict()  # written through before anyone sees it
        self._state = state
        self._save_ledger(follow(self._load_ledger(), state, self.clock()))

    def _load_ledger(self) -> Ledger:
        """The usage ledger (call under ``self._lock``); kept decoded like the state."""
        if self._ledger is None:
            self._ledger = self._ledger_stored = Ledger.from_dict(self.get(LEDGER_KEY), self._load())
        return self._ledger

    def _save_ledger(self, ledger: Ledger) -> None:
        """Keep the ledger's latest fold; it is written by the poller (:meth:`_write_ledger`), not by commands.

        A command's fold needs no write of its own: the spans it opens or closes are dated by the
        state it saved (a hold's ``since``, the last release, the termination), and the next tick's
        fold finds them there again, also after a restart or a ``kill -9``. So lock and unlock pay one
        storage write (the state), as before the ledger.
        """
        self._ledger = ledger

    def _write_ledger(self) -> None:
        """Write the ledger if it changed since it was last written (call under ``self._lock``).

        Its heartbeats move once a minute, so a steady tick writes it at most once a minute.
        """
        ledger = self._load_ledger()
        if ledger is self._ledger_stored or ledger == self._ledger_stored:
            return
        self[LEDGER_KEY] = ledger.to_dict()
        self._ledger_stored = ledger

    @property
    def _watch_gap(self) -> timedelta:
        """A longer pause between two ticks means the bot was down: that time is not watched."""
        return timedelta(seconds=2 * self.settings.poll_seconds + 60)

    def _refresh(self) -> tuple[State, Listing]:
        """List the clusters (outside the lock) and fold the listing into the state, unless it is stale.

        A tick and a command may list at the same time; the one that started
        listing first may finish last. Folding that older listing would undo
        what the newer one (and a command in between) recorded, so a listing
        is folded only if it started after the last one folded.
        """
        number = next(self._listings)
        asked = self.clock()
        listing = self.adapter.list_clusters()
        now = self.clock()
        with self._lock:
            old = self._load()
            if number < self._folded:
                return old, listing
            self._folded = number
            state = observe(old, listing.managed, now, listed_since=asked)
            if state != old:  # a steady-state status or tick writes nothing
                self._save(state)
            self._save_ledger(seen(self._load_ledger(), listing.managed, now))
        return state, listing

    def _target(self, words: str, *, rest_allowed: bool = False) -> tuple[ClusterInfo, str]:
        """The managed cluster some words name (and the words after its name); refusals as domain errors."""
        state, listing = self._refresh()
        listed = [c for c in listing.managed if c.id in state.clusters and state.clusters[c.id].listed]
        try:
            return name_cluster(words, listed, listing.others, rest_allowed=rest_allowed)
        except NoneRunning:
            raise NoClusterError(self.view.no_cluster(state)) from None
        except NameProblem as problem:
            raise UnknownClusterError(self.view.name_problem(problem)) from None

    @contextlib.contextmanager
    def _editing(self, cluster: ClusterInfo) -> Iterator[tuple[State, ClusterRecord]]:
        """Under the state lock: the current state and the cluster's record, or a refusal if it is gone meanwhile."""
        with self._lock:
            state = self._load()
            record = state.clusters.get(cluster.id)
            if record is None or not record.listed:
                raise UnknownClusterError(self.view.gone_meanwhile(cluster))
            yield state, record

    # -- the poller -------------------------------------------------------------------
    def tick(self, generation: int | None = None) -> None:
        """One pass of the automatic rules. Never raises: the poller must survive everything.

        *generation* identifies the activation that started this poller: after a
        deactivate + activate while a tick was in flight, Errbot would re-arm the
        old timer when that tick returns (its (method, args) is listed again), so
        the poller carries its activation's number and a stale one stops.
        """
        if generation is not None and generation != self._generation:
            return
        try:
            self._tick()
        except AwsError as error:
            if self._poll_failure != error.code:
                self._poll_failure = error.code
                self._announce(self.view.poller_down(str(error)))
            log.warning("EMR poller tick failed: %s", error)
        except Exception:
            log.exception("EMR poller tick failed")

    def _tick(self) -> None:
        state, _ = self._refresh()
        if self._poll_failure is not None:
            self._poll_failure = None
            self._announce(self.view.poller_back)
        self._recheck_unlisted(state)
        self._read_instances_where_due()
        self._read_activity_if_due()
        self._read_steps_where_due()
        now = self.clock()
        with self._lock:
            old = self._load()
            state, effects = plan_tick(old, self.policy, now)
            if state != old:
                self._save(state)
            ledger = watch(self._load_ledger(), now, self._watch_gap)
            self._save_ledger(ledger_bounded(follow(ledger, state, now), now))
            self._write_ledger()
        for effect in effects:
            if isinstance(effect, Warn):
                buttons = buttons_for(effect.deadline.rule, effect.cluster.id, effect.deadline.at)
                self._announce(self.view.warning(effect.cluster, effect.deadline), buttons)
            elif isinstance(effect, Cancelled):
                self._announce(self.view.termination_called_off(effect.cluster, effect.rule, effect.why))
            elif isinstance(effect, Remind):
                buttons = buttons_for("reminder", effect.cluster.id, effect.ends_at, effect.hold.user)
                self._announce(self.view.reminder(effect), buttons)
            elif isinstance(effect, Expire):
                self._announce(self.view.expired(effect, state, now))
            elif isinstance(effect, Terminate):
                self._terminate_by_rule(effect)
            elif isinstance(effect, Ready):
                self._announce(self.view.ready(effect, state, now))
        self._sync_backstop()

    def _recheck_unlisted(self, state: State) -> None:
        """Ask AWS about remembered clusters the listing did not show: ended, untagged, or just not listed."""
        now = self.clock()
        for cluster_id in to_recheck(state, self._rechecked, now):
            self._rechecked[cluster_id] = now
            try:
                info = self.adapter.describe(cluster_id)
            except AwsError as error:  # kept as it is: absence proves nothing
                log.warning("EMR poller: cannot re-read %s: %s", cluster_id, error)
                continue
            with self._lock:
                old = self._load()
                new, settled = settle(old, info, self.clock())
                if new != old:
                    self._save(new)
            if settled.kind in ("start_failed", "ended"):
                with self._lock:
                    self._save_ledger(ended(self._load_ledger(), info, self.clock()))
            if settled.kind == "start_failed":
                self._rechecked.pop(cluster_id, None)
                self._announce(self.view.start_failure(settled.record, info))
            elif settled.kind == "ended":
                self._rechecked.pop(cluster_id, None)
                record = settled.record
                if record.ending is None and (record.holds or record.doomed is not None):
                    self._announce(self.view.ended(record, info))
            elif settled.kind == "unmanaged":
                self._announce(self.view.unmanaged(settled.record))

    def _read_instances_where_due(self, only: list[str] | None = None) -> None:
        """Read what the clusters run (for their cost): once, and again after a state change (DESIGN §13).

        No request in steady state; a failure is logged and retried after INSTANCES_RETRY.
        """
        with self._instances_lock:  # single flight: a status and a tick seeing a new cluster read it once
            self._read_instances(only)

    def _read_instances(self, only: list[str] | None) -> None:
        now = self.clock()
        with self._lock:
            state = self._load()
            due = [cid for cid in instances_due(self._load_ledger(), state) if only is None or cid in only]
        for cluster_id in due:
            cluster_state = state.clusters[cluster_id].state
            tried = self._instances_tried.get(cluster_id)
            if tried is not None and tried[0] == cluster_state and now - tried[1] < INSTANCES_RETRY:
                continue
            try:
                composition = self.adapter.instances(cluster_id)
            except AwsError as error:
                self._instances_tried[cluster_id] = (cluster_state, now)
                log.warning("EMR: cannot read the instances of %s (its cost stays unknown): %s", cluster_id, error)
                continue
            self._instances_tried.pop(cluster_id, None)
            with self._lock:
                self._save_ledger(instances_seen(self._load_ledger(), self._load(), cluster_id, composition, now))

    def _read_activity_if_due(self) -> None:
        """Read IsIdle of the managed clusters (one GetMetricData), at most once per metric period.

        A CloudWatch failure is announced once (not every tick); meanwhile the
        idle rule goes by the cluster state and steps (activity read longer than
        three periods ago is forgotten).
        """
        now = self.clock()
        if self.settings.activity == "off":
            return
        with self._lock:
            state = self._load()
            if self._activity_read_at is not None and now - self._activity_read_at < ACTIVITY_PERIOD:
                return
            ids = [r.id for r in state.listed()]
        if not ids:
            return
        self._activity_read_at = now
        window = max(self.policy.idle, self.policy.remind or self.policy.idle) + ACTIVITY_PERIOD
        try:
            readings = self.adapter.read_activity(ids, now, window)
        except AwsError as error:
            with self._lock:
                old = self._load()
                new = activity_unknown(old, now)
                if new != old:
                    self._save(new)
            if self._activity_failure != error.code:
                self._activity_failure = error.code
                self._announce(self.view.activity_down(str(error)))
            log.warning("EMR poller: cannot read IsIdle: %s", error)
            return
        if self._activity_failure is not None:
            self._activity_failure = None
            self._announce(self.view.activity_back)
        with self._lock:
            old = self._load()
            new = activity_seen(old, readings, now)
            if new != old:
                self._save(new)

    @property
    def _activity_problem(self) -> str | None:
        """Why activity is unknown for every cluster, or None (then per cluster: no datapoint yet)."""
        if self.settings.activity == "off":
            return "ACTIVITY=off"
        if self._activity_failure is not None:
            return f"CloudWatch: {self._activity_failure}; see !emr doctor"
        return None

    def _read_steps_where_due(self) -> None:
        """Before the idle rule warns or terminates, fold in steps that listings cannot show."""
        now = self.clock()
        with self._lock:
            state = self._load()
            due = [r.id for r in state.listed() if needs_step_check(state, r, self.policy, now)]
        for cluster_id in due:
            try:
                last_end, busy = self.adapter.latest_step(cluster_id)
            except AwsError as error:  # the idle rule then goes by the cluster state alone
                log.warning("EMR poller: cannot read the steps of %s: %s", cluster_id, error)
                continue
            with self._lock:
                old = self._load()
                new = steps_seen(old, cluster_id, last_end, busy, now)
                if new != old:
                    self._save(new)

    def _sync_backstop(self, only: str | None = None) -> None:
        """Make EMR's AutoTerminationPolicy match the holds (DESIGN §12): one request per cluster that changed.

        Called by the poller for every managed cluster and by a command for its own (*only*), after
        the command's state is saved. Never raises: a failure is noted in the state, announced once,
        and retried (the poller: at most every 5 minutes); the command has answered regardless.
        """
        seconds = self.settings.backstop_seconds
        if seconds is None:
            return  # BACKSTOP_MINUTES off: the bot leaves EMR's policy alone
        with self._backstop_lock:
            now = self.clock()
            with self._lock:
                state = self._load()
                due = backstop_due(state, seconds, now, self._backstop_tried, only)
            for cluster_id, wanted in due:
                record = state.clusters[cluster_id]
                self._backstop_tried[cluster_id] = now
                try:
                    if wanted:
                        self.adapter.put_backstop(record, wanted)
                    else:
                        self.adapter.remove_backstop(record)
                except AwsError as error:
                    log.warning("EMR backstop of %s not changed: %s", cluster_id, error)
                    with self._lock:
                        old = self._load()
                        new, is_new = backstop_failed(old, cluster_id, error.code)
                        if new is not old:
                            self._save(new)
                    if is_new:
                        self._announce(self.view.backstop_failed(record, wanted, str(error)))
                    continue
                with self._lock:
                    new, recovered = backstop_set(self._load(), cluster_id, wanted)
                    self._save(new)
                if recovered:
                    self._announce(self.view.backstop_back(record, wanted))

    def _terminate_by_rule(self, effect: Terminate) -> None:
        cluster_id, rule = effect.cluster.id, effect.rule
        # The state lock is held across the re-read and TerminateJobFlows on purpose: a
        # `!emr lock` arriving in between must either land before the decision (and
        # cancel it) or after the termination (and be refused) — never be acknowledged
        # and then have its cluster terminated. Commands wait at most one AWS round trip.
        with self._lock:
            state = self._load()
            record = state.clusters.get(cluster_id)
            if record is None or record.doomed is None or not record.listed:
                return  # a hold cancelled it, or it is already gone
            now = self.clock()
            try:
                fresh = self.adapter.describe(cluster_id)
                why = termination_refusal(record, fresh, effect.expect)
                if why is None:
                    self.adapter.terminate(record)
            except AwsError as error:
                state, is_new = termination_failed(state, cluster_id, error.code, str(error), now)
                self._save(state)
                if is_new:
                    self._announce(self.view.termination_failed(record, rule, str(error)))
                return
            if why is not None:
                self._save(refused_termination(state, cluster_id, fresh, why, now))
            else:
                self._save(terminated(state, cluster_id, now, rule=rule, who=None))
        if why is not None:
            self._announce(self.view.termination_called_off(record, rule, why))
        else:
            self._announce(self.view.terminated_by_rule(record, rule))

    # -- commands ---------------------------------------------------------------------
    @botcmd
    @answers
    def emr(self, msg: Any, args: str) -> str:
        """Share the EMR cluster: !emr status | start | lock | unlock | terminate | overtime | history | doctor."""
        word = args.split()[0] if args.split() else ""
        if not word:
            raise UsageError("Say what to do: !emr " + " | ".join(SUBCOMMANDS) + " (details: !help EMR).")
        raise UsageError(f"Unknown subcommand {self.view.inert(word)}: try !emr " + " | ".join(SUBCOMMANDS) + ".")

    @botcmd
    @answers
    def emr_status(self, msg: Any, args: str) -> str | None:
        """Show each managed cluster: state, uptime, holders, and the next automatic termination. Usage: !emr status [CLUSTER]"""
        _reject_options(args.split(), self.view)
        shown = [self._target(args)[0]] if args.strip() else self._refresh()[1].managed
        now = self.clock()
        with self._lock:
            state = self._load()
        # A listing may be older than the state (a termination in between): show what both agree on.
        records = [(state.clusters[c.id], c) for c in shown if c.id in state.clusters and state.clusters[c.id].listed]
        if not records:
            return self.view.no_cluster(state)
        self._read_instances_where_due(only=[r.id for r, _ in records])  # a cluster seen for the first time
        with self._lock:
            ledger = self._load_ledger()
        costs = {r.id: self._cost(ledger, r.id, now) for r, _ in records}
        if self._on_slack:
            # One card (a Slack attachment with a plain-text fallback) per cluster.
            for record, cluster in records:
                self._reply_slack(
                    msg, self.view.status_message(state, record, cluster, now, self._activity_problem, costs[record.id])
                )
            return None
        problem = self._activity_problem
        return "\n".join(
            self.view.status_lines(state, record, cluster, now, problem, costs[record.id])
            for record, cluster in records
        )

    def _cost(self, ledger: Ledger, cluster_id: str, now: datetime) -> CostSoFar:
        return cost_so_far(ledger, self.settings.prices, self.settings.region, cluster_id, now)

    @botcmd
    @answers
    def emr_report(self, msg: Any, args: str) -> str | None:
        """Per day: hours up, held, busy and idle, automatic terminations, cost, and what the rules saved. Usage: !emr report [DAYS]"""
        words = args.split()
        if len(words) > 1 or (words and not COUNT_WORD_RE.fullmatch(words[0])):
            raise UsageError(self.view.report_usage(REPORT_MAX_DAYS))
        days = int(words[0]) if words else REPORT_DEFAULT_DAYS
        if not 1 <= days <= REPORT_MAX_DAYS:
            raise UsageError(self.view.report_usage(REPORT_MAX_DAYS))
        now = self.clock()
        with self._lock:  # a consistent copy; the figures are computed outside the lock (a tick may run)
            active = list(self._load().clusters)
            ledger = watch(self._load_ledger(), now, self._watch_gap, exact=True)
        settings = self.settings
        figures = usage_report(
            ledger, settings.prices, settings.region, settings.timezone, days, now, settings.end_of_day, active
        )
        text = self.view.report(figures, days, now)
        if not self._on_slack:
            return text
        to = msg.to if msg.is_group else msg.frm
        self.send(to, text)
        return self._upload_chart(msg, render_chart(figures, self.view.report_title(days)), days)

    def _upload_chart(self, msg: Any, png: bytes, days: int) -> str | None:
        """Upload the chart to the channel the report was asked in, by its id (DESIGN §13).

        Through the Web API's ``files_upload_v2``: the SlackV3 backend's own stream upload names the
        channel as ``<#C…|name>``, which Slack's upload refuses.
        """
        channel = msg.to.id if msg.is_group else getattr(msg.frm, "channelid", None)
        try:
            self._bot.slack_web.files_upload_v2(
                channel=channel,
                file=png,
                filename=f"emr-report-{days}d.png",
                title=self.view.report_title(days),
            )
        except Exception as error:
            log.warning("!emr report: chart not uploaded to %s: %s", channel, error)
            return self.view.chart_failed(error)
        return None

    @botcmd
    @answers
    def emr_start(self, msg: Any, args: str) -> str:
        """Start a cluster from a template; you hold it at once, and hear when it is ready. Usage: !emr start [TEMPLATE] [REASON…]"""
        templates = {t.name: t for t in self.settings.templates}
        if not templates:
            raise RefusedError(self.view.start_off)
        first = args.split()[0] if args.split() else ""
        if first.startswith("--"):
            raise UsageError(f"Unknown option {self.view.inert(first)}.")
        try:
            name_of, reason = choose_template(args, list(templates))
        except TemplateProblem as problem:
            raise UsageError(self.view.template_problem(problem)) from None
        template = templates[name_of]
        reason = " ".join(reason.split())
        if len(reason) > REASON_LIMIT:
            raise UsageError(f"The reason is {len(reason)} characters long; keep it under {REASON_LIMIT}.")
        user, name = self._who(msg)
        # Single flight: the refusals are decided and RunJobFlow made under one lock, and the new cluster is
        # in the state before the lock is let go, so a second `!emr start` sees it (a listing may not yet).
        with self._start_lock:
            state, listing = self._refresh()
            refused = may_start(template, active_clusters(state, listing.managed), self.settings.max_clusters)
            if refused is not None:
                raise RefusedError(self.view.start_refused(refused))
            backstop = self.settings.backstop_seconds
            try:
                cluster_id = self.adapter.start(template.run_job_flow(self._start_tags(template, user), backstop))
            except AwsError as error:
                raise RefusedError(self.view.start_failed(template, error)) from None
            now = self.clock()
            with self._lock:
                state = started(
                    self._load(),
                    cluster_id,
                    template.cluster_name,
                    template.name,
                    user,
                    name,
                    reason,
                    now,
                    backstop=backstop,
                )
                self._save(state)
        self._sync_backstop(cluster_id)  # the starter's hold: EMR's idle timeout comes off again
        record = state.clusters[cluster_id]
        return self.view.starting(state, record, template, now, evening=after_end_of_day(self.policy, now))

    def _start_tags(self, template: Template, user: str) -> dict[str, str]:
        managed = policy_tag(self.settings.cluster_tag)  # with CLUSTER_TAG `*`: the shipped policy's tag
        assert managed.key is not None
        return start_tags((managed.key, managed.value or "true"), template.name, user)

    @botcmd
    @answers
    def emr_lock(self, msg: Any, args: str) -> str:
        """Hold a cluster while you use it (several people can hold it); cancels the idle countdown. Usage: !emr lock [CLUSTER] [REASON…]"""
        return self._lock_command(msg, args)

    def _lock_command(self, msg: Any, args: str) -> str:
        first = args.split()[0] if args.split() else ""
        if first.startswith("--"):
            raise UsageError(f"Unknown option {self.view.inert(first)}.")
        cluster, reason = self._target(args, rest_allowed=True)
        reason = " ".join(reason.split())
        if len(reason) > REASON_LIMIT:
            raise UsageError(f"The reason is {len(reason)} characters long; keep it under {REASON_LIMIT}.")
        user, name = self._who(msg)
        with self._editing(cluster) as (state, _):
            now = self.clock()
            state = add_hold(state, cluster.id, user, name, reason, now)
            self._save(state)
        self._sync_backstop(cluster.id)  # a first hold removes EMR's idle timeout
        record = state.clusters[cluster.id]
        return self.view.locked(state, record, name, now, overtime_possible=self._overtime_possible(state, record, now))

    def _overtime_possible(self, state: State, record: ClusterRecord, now: datetime) -> bool:
        """Whether `!emr overtime` would be accepted now (so a reply never promises what it refuses)."""
        try:
            overtime_until(self.policy, state, record, None, now)
        except ValueError:
            return False
        return True

    @botcmd
    @answers
    def emr_unlock(self, msg: Any, args: str) -> str:
        """Release your hold on a cluster; admins can release someone else's with --user NAME. Usage: !emr unlock [CLUSTER] [--user NAME]"""
        return self._unlock_command(msg, args)

    def _unlock_command(self, msg: Any, args: str) -> str:
        words = args.split()
        target: str | None = None
        if "--user" in words:
            at = words.index("--user")
            if at + 1 >= len(words):
                raise UsageError("--user needs a name: !emr unlock [CLUSTER] --user NAME")
            target = _user_ref(words[at + 1])
            words = words[:at] + words[at + 2 :]
        _reject_options(words, self.view)
        cluster, _ = self._target(" ".join(words))
        user, name = self._who(msg)
        with self._editing(cluster) as (state, record):
            decision = hold_to_release(record, user, name, target, admin=self._is_admin(msg))
            if isinstance(decision, Denied):
                raise RefusedError(self.view.denied(decision, record))
            now = self.clock()
            by = name if decision.user != user else None
            state = drop_hold(state, cluster.id, decision.user, now, by=by)
            self._save(state)
        self._sync_backstop(cluster.id)  # the last release puts EMR's idle timeout back
        return self.view.released(state, state.clusters[cluster.id], decision, user, name, now)

    @botcmd
    @answers
    def emr_terminate(self, msg: Any, args: str) -> str:
        """Terminate a cluster now; refused while others hold it unless an admin adds --force. Usage: !emr terminate [CLUSTER] [--force]"""
        words = args.split()
        force = "--force" in words
        words = [w for w in words if w != "--force"]
        _reject_options(words, self.view)
        cluster, _ = self._target(" ".join(words))
        user, name = self._who(msg)
        # The lock is held across the re-read and TerminateJobFlows: see _terminate_by_rule.
        with self._editing(cluster) as (state, record):
            denied = may_terminate(record, user, force=force, admin=self._is_admin(msg))
            if denied is not None:
                raise RefusedError(self.view.denied(denied, record))
            fresh = self.adapter.describe(cluster.id)
            why = termination_refusal(record, fresh, {"STARTING", "BOOTSTRAPPING", "RUNNING", "WAITING"})
            if why is not None:
                raise RefusedError(self.view.not_terminated(record, why))
            self.adapter.terminate(record)
            now = self.clock()
            self._save(terminated(state, cluster.id, now, rule=None, who=name))
        others = [h for h in record.holds if h.user != user]
        if others:
            self._announce(self.view.force_terminated(record, name, others))
        return self.view.terminating(record, name, others)

    @botcmd
    @answers
    def emr_overtime(self, msg: Any, args: str) -> str:
        """Keep a cluster you hold past tonight's end of day, until HH:MM (default 2 h later). Usage: !emr overtime [CLUSTER] [HH:MM]"""
        return self._overtime_command(msg, args)

    def _overtime_command(self, msg: Any, args: str) -> str:
        words = args.split()
        _reject_options(words, self.view)
        hhmm = None
        if words and HHMM_WORD_RE.fullmatch(words[-1]):
            try:
                hhmm = parse_hhmm("HH:MM", words.pop())
            except ConfigError:
                raise UsageError("The time must be HH:MM, 00:00–23:59.") from None
        cluster, _ = self._target(" ".join(words))
        user, name = self._who(msg)
        with self._editing(cluster) as (state, record):
            denied = may_ask_overtime(record, user)
            if denied is not None:
                raise RefusedError(self.view.denied(denied, record))
            now = self.clock()
            try:
                until, day = overtime_until(self.policy, state, record, hhmm, now)
            except ValueError as problem:
                raise RefusedError(f"No overtime: {problem}.") from None
            state = set_overtime(state, cluster.id, user, name, until, day, now)
            self._save(state)
        text = self.view.overtime_set(record, name, until)
        self._announce(text)
        return text

    @botcmd
    @answers
    def emr_history(self, msg: Any, args: str) -> str:
        """The last N events (holds, releases, warnings, overtime, terminations). Usage: !emr history [N]"""
        words = args.split()
        if len(words) > 1 or (words and not COUNT_WORD_RE.fullmatch(words[0])):
            raise UsageError(f"!emr history takes one number N (1–{HISTORY_MAX}).")
        count = int(words[0]) if words else HISTORY_DEFAULT
        if not 1 <= count <= HISTORY_MAX:
            raise UsageError(f"N must be between 1 and {HISTORY_MAX}.")
        with self._lock:
            events = self._load().history[-count:]
        return self.view.history(events)

    @botcmd
    @answers
    def emr_doctor(self, msg: Any, args: str) -> str:
        """Check the whole chain (identity, AssumeRole, EMR permissions, clusters, config) and say what to fix."""
        if args.split():
            raise UsageError("!emr doctor takes no arguments.")
        with self._lock:
            state = self._load()
        return Doctor(self.settings, self.session, self.clock).report(state, self._notify_check())

    def _notify_check(self) -> Check:
        channel = self.settings.notify_channel
        if channel is None:
            return Check(
                FAIL,
                "NOTIFY_CHANNEL",
                "not set: warnings and automatic terminations are only logged",
                "set EMR_NOTIFY_CHANNEL=#emr-alerts (and invite the bot there)",
            )
        title = f"NOTIFY_CHANNEL {channel}"
        if not self._on_slack:
            return Check(OK, title, "set")
        try:
            joined = self._slack_member_of(channel)
        except Exception:
            log.warning("doctor: cannot resolve NOTIFY_CHANNEL %s", channel, exc_info=True)
            return Check(FAIL, title, "no such channel on Slack", "set EMR_NOTIFY_CHANNEL to an existing #channel")
        if joined is False:
            return Check(
                FAIL,
                title,
                "the bot is not a member: it cannot post there",
                f"`/invite @{self._bot_name()}` in {channel}",
            )
        return Check(OK, title, "the bot is a member" if joined else "set")

    def _slack_member_of(self, channel: str) -> bool | None:
        """Whether the bot is in *channel*: ``conversations.info`` on the channel's id.

        Not the backend's ``room.joined``: it reads one page of ``conversations.list`` only,
        so in a workspace with more channels than a page it says "not a member" wrongly.
        Resolving the name to an id pages through the whole list (the backend's room does).
        """
        room = self.build_identifier(channel)
        info = self._bot.slack_web.conversations_info(channel=room.id)
        member = info["channel"].get("is_member")
        return None if member is None else bool(member)

    def _bot_name(self) -> str:
        identifier = self._bot.bot_identifier
        return str(getattr(identifier, "nick", None) or getattr(identifier, "username", None) or "the bot")

    # -- chat glue ----------------------------------------------------------------------
    def _who(self, msg: Any) -> tuple[str, str]:
        """(stable identity, display name) of the sender."""
        frm = msg.frm
        person = getattr(frm, "person", None) or str(frm)
        name = getattr(frm, "nick", None) or getattr(frm, "fullname", None) or str(person)
        return str(person), str(name).lstrip("@")

    def _is_admin(self, msg: Any) -> bool:
        admins = self.bot_config.BOT_ADMINS
        who = getattr(msg.frm, "aclattr", None) or str(msg.frm)
        return any(fnmatch.fnmatchcase(str(who), pattern) for pattern in admins)

    @property
    def view(self) -> View:
        """The wording, rendered for the chat this bot is on."""
        return View(self.settings, self.policy, slack=self._on_slack)

    @property
    def _on_slack(self) -> bool:
        """Replies go to Slack: mentions are ``<@U…>``, status is a card, user text is escaped."""
        return getattr(self._bot, "mode", "") in SLACK_MODES

    def _slack_name(self, user_id: str) -> str | None:
        """A mentioned person's Slack name (users.info, cached by the backend); None if Slack does not say."""
        try:
            return str(self._bot.userid_to_username(user_id))
        except Exception:
            log.info("no Slack name for the mentioned %s", user_id, exc_info=True)
            return None

    def _reply_slack(self, msg: Any, payload: dict[str, Any]) -> None:
        """Post a Slack message (``text`` fallback + attachments or blocks) where *msg* came from.

        The backend's ``send_card`` sends no ``text`` and no ``fallback`` (notifications and
        screen readers get nothing), so cards go through ``chat.postMessage`` here: in the
        channel the command came from, or the DM (not a thread).
        """
        channel = msg.to.id if msg.is_group else msg.frm.channelid
        self._bot.slack_web.chat_postMessage(channel=channel, **payload)

    def _announce(self, text: str, buttons: Buttons | None = None) -> None:
        """Post to NOTIFY_CHANNEL (and always log, so nothing depends on chat alone).

        On Slack, *buttons* make it a Block Kit message whose buttons run the commands the
        text names (DESIGN §14); the text stays its plain-text fallback. Elsewhere: the text.
        """
        log.info("announce: %s", text)
        channel = self.settings.notify_channel
        if not channel:
            return
        try:
            if buttons is not None and self._on_slack:
                self._send_blocks(self.build_identifier(channel), text, message_blocks(text, buttons))
            else:
                self.send(self.build_identifier(channel), text)
        except Exception:
            log.exception("Could not post to NOTIFY_CHANNEL %s", channel)

    # -- Slack buttons (DESIGN §14; the listener is in emr_slack) -------------------------------------
    def _send_blocks(self, to: Any, text: str, blocks: list[dict[str, Any]]) -> None:
        """A Block Kit message through the backend (which keeps *text*, converted like any reply, as its fallback)."""
        msg = self._bot.build_message(text)
        msg.to, msg.frm = to, self._bot.bot_identifier
        msg.extras["blocks"] = blocks
        self._bot.send_message(msg)

    def run_click_command(self, command: str, msg: Any, cluster_id: str) -> str:
        """What a button does: the command it stands for, on its cluster, as the clicker (refusals raise)."""
        run = {"lock": self._lock_command, "unlock": self._unlock_command, "overtime": self._overtime_command}[command]
        return run(msg, cluster_id)


class _PluginTokenStore:
    """The STS token in the plugin's persistent storage (see :mod:`crossaccount`)."""

    def __init__(self, plugin: EMR) -> None:
        self._plugin = plugin
        # Its own lock, never the plugin's state lock: save() runs inside botocore's
        # credential refresh lock, and a command holding the state lock (terminate)
        # may be waiting for that refresh lock — sharing one lock would deadlock.
        self._lock = threading.Lock()

    def load(self) -> Token | None:
        token: Token | None = self._plugin.get(TOKEN_KEY)
        return token

    def save(self, token: Token | None) -> None:
        with self._lock:
            if token is None:
                if TOKEN_KEY in self._plugin:
                    del self._plugin[TOKEN_KEY]
            else:
                self._plugin[TOKEN_KEY] = token


def _reject_options(words: list[str], view: View) -> None:
    unknown = [w for w in words if w.startswith("--")]
    if unknown:
        raise UsageError(f"Unknown option {view.inert(unknown[0])}.")


def _user_ref(word: str) -> str:
    """A user named in a command: ``alice``, ``@alice``, or a Slack mention ``<@U0ALICE>`` (its id)."""
    mention = SLACK_MENTION_RE.fullmatch(word)
    return mention.group(1) if mention else word.lstrip("@")


__all__ = ["EMR"]
