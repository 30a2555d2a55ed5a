"""EMR: share the team's Amazon EMR cluster from chat.

The plugin only wires collaborators and words the replies:

* :mod:`emr_settings` validates the ``EMR`` dict of the bot config;
* :mod:`crossaccount` holds the AssumeRole session into the cluster account,
  its token kept in this plugin's storage;
* :mod:`emr_adapter` lists managed clusters and terminates them;
* :mod:`emr_rules` decides (pure functions of state and ``now``).
* :mod:`emr_doctor` runs the checks of ``!emr doctor``.

All state lives in the plugin storage under ``state`` (versioned plain data,
see :class:`emr_rules.State`) and ``sts`` (the temporary credentials). Every
read-modify-write of it happens under ``self._lock``: commands run on Errbot's
thread pool and the poller on its own thread.
"""

from __future__ import annotations

import contextlib
import fnmatch
import functools
import importlib
import logging
import os
import re
import sys
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from errbot import BotPlugin, botcmd

_SIBLINGS = ("emr_errors", "emr_settings", "emr_rules", "crossaccount", "emr_adapter", "emr_doctor")  # dependency order


def _reload_siblings_if_changed() -> None:
    """Make ``!plugin reload EMR`` pick up an upgrade of the whole package.

    Errbot re-executes this file on reload, but the sibling modules are plain
    top-level imports cached in ``sys.modules``: without this, a reload after
    ``git pull`` would keep running the old rules, adapter and session code.
    When any sibling changed on disk since this file last imported it, all of
    them are reloaded in dependency order (so none keeps another's old classes).
    """
    loaded = [sys.modules[name] for name in _SIBLINGS if name in sys.modules]
    # The file's own mtime is compared, not the clock: tests move wall-clock time.
    if any(_mtime(m) != getattr(m, "_emr_mtime", _mtime(m)) for m in loaded):
        for module in loaded:
            importlib.reload(module)


def _mtime(module: Any) -> float:
    return os.stat(module.__file__).st_mtime


def _stamp_siblings() -> None:
    for name in _SIBLINGS:
        module = sys.modules[name]
        module.__dict__["_emr_mtime"] = _mtime(module)  # remembered on the module itself


_reload_siblings_if_changed()

from crossaccount import CrossAccountSession, RoleTarget, Token, utc_now
from emr_adapter import EmrAdapter
from emr_doctor import FAIL, OK, Check, Doctor
from emr_errors import (
    AwsError,
    ConfigError,
    EmrChatopsError,
    NoClusterError,
    RefusedError,
    UnknownClusterError,
    UsageError,
)
from emr_rules import (
    REASON_LIMIT,
    ClusterInfo,
    ClusterRecord,
    Deadline,
    Hold,
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
from emr_settings import Settings, from_mapping, parse_hhmm

_stamp_siblings()

log = logging.getLogger("errbot.plugins.emr")

SUBCOMMANDS = ("status", "lock", "unlock", "terminate", "overtime", "history", "doctor")
HISTORY_DEFAULT = 10
HISTORY_MAX = 50
ARGS_LIMIT = 1000
CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
STATE_KEY = "state"
TOKEN_KEY = "sts"  # noqa: S105 - a storage key name, not a secret
RULE_WORDS = {"idle": "idle rule", "end_of_day": "end of day", "overtime": "overtime ended"}
# Backend modes that speak Slack markup (errbot-backend-slackv3 says "slackv3").
SLACK_MODES = frozenset({"slack", "slackv3", "slack_rtm"})
SLACK_MENTION_RE = re.compile(r"<@([A-Z0-9]+)(?:\|[^>]*)?>")
# Status card colours (Slack attachment side bar): Slack's own good / info / warning / danger.
COLOR_IDLE = "#2EB886"  # WAITING, nobody holds it: the idle countdown runs
COLOR_BUSY = "#439FE0"  # a step is running (or the cluster is starting): never idle
COLOR_HELD = "#DAA038"  # someone holds it
COLOR_DOOMED = "#A30200"  # being terminated now


def answers(method: Callable[..., str | None]) -> Callable[..., str | None]:
    """Turn domain errors into one-line replies, and anything else into a short apology.

    Errbot would otherwise answer an exception with its message (possibly a
    multi-line botocore text); the traceback goes to the log only.
    """

    @functools.wraps(method)
    def wrapper(self: EMR, msg: Any, args: str) -> str | None:
        try:
            if len(args) > ARGS_LIMIT:
                raise UsageError(f"That is {len(args)} characters of arguments; the limit is {ARGS_LIMIT}.")
            return method(self, msg, args)
        except EmrChatopsError as error:
            return f"✗ {_one_line(str(error))}"
        except Exception:
            log.exception("!emr command failed: %s", method.__name__)
            return "✗ Something unexpected went wrong (details are in the bot's log); nothing was changed."

    return wrapper


def _one_line(text: str) -> str:
    return " ".join(text.split())


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
        )
        self._lock = threading.RLock()
        self._poll_failure: str | None = None
        self._state: State | None = None  # decoded copy of the stored state, see _load
        super().activate()
        target = RoleTarget(
            role_arn=self.settings.role_arn,
            region=self.settings.region,
            external_id=self.settings.external_id,
            endpoint_url=self.settings.endpoint_url,
            session_seconds=self.settings.session_seconds,
        )
        self.session = CrossAccountSession(target, _PluginTokenStore(self), clock=lambda: self.clock())
        self.adapter = EmrAdapter(self.session, self.settings.cluster_tag)
        with self._lock:
            State.from_dict(self.get(STATE_KEY))  # refuse to start on state we cannot read
        self.start_poller(self.settings.poll_seconds, self.tick)
        log.info(
            "EMR plugin active: role %s, region %s, tag %s, poll every %ss",
            self.settings.role_arn,
            self.settings.region,
            self.settings.cluster_tag,
            self.settings.poll_seconds,
        )

    def deactivate(self) -> None:
        with contextlib.suppress(ValueError):  # activation failed before the poller started
            self.stop_poller(self.tick)
        # Errbot only cancels the timers when pollers are left over; stop_poller
        # just emptied that list, so cancel the pending timer here ourselves.
        for timer in list(self.current_timers):
            timer.cancel()
        lock = getattr(self, "_lock", None)
        if lock is not None:
            with lock:  # let a tick in flight finish before the storage closes
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

    def _refresh(self) -> tuple[State, list[ClusterInfo]]:
        """List the managed clusters (outside the lock) and fold them into the state."""
        clusters = self.adapter.list_managed()
        now = self.clock()
        with self._lock:
            old = self._load()
            state, vanished = observe(old, clusters, now)
            state = self._settle_vanished(state, vanished, now)
            if state != old:  # a steady-state status or tick writes nothing
                self._save(state)
        return state, clusters

    def _settle_vanished(self, state: State, vanished: list[ClusterRecord], now: datetime) -> State:
        """A cluster that was being terminated and is now gone: announce it (once)."""
        for record in vanished:
            if record.doomed is not None:
                state = terminated(state.with_cluster(record), record.id, now, rule=record.doomed.rule, who=None)
                self._announce(f"🛑 {record.name} ({record.id}) was terminated: {self._rule_text(record.doomed.rule)}.")
        return state

    # -- the poller -------------------------------------------------------------------
    def tick(self) -> None:
        """One pass of the automatic rules. Never raises: the poller must survive everything."""
        try:
            self._tick()
        except AwsError as error:
            if self._poll_failure != error.code:
                self._poll_failure = error.code
                self._announce(f"⚠️ The EMR poller cannot reach the cluster account: {_one_line(str(error))}")
            log.warning("EMR poller tick failed: %s", error)
        except Exception:
            log.exception("EMR poller tick failed")

    def _tick(self) -> None:
        state, _ = self._refresh()
        if self._poll_failure is not None:
            self._poll_failure = None
            self._announce("✓ The EMR poller reaches the cluster account again.")
        now = self.clock()
        with self._lock:
            old = self._load()
            state, effects = plan_tick(old, self.policy, now)
            if state != old:
                self._save(state)
        for effect in effects:
            if isinstance(effect, Warn):
                self._warn(effect.cluster, effect.deadline)
            elif isinstance(effect, Terminate):
                self._terminate_by_rule(effect.cluster.id, effect.rule)

    def _warn(self, record: ClusterRecord, deadline: Deadline) -> None:
        at = self._local(deadline.at)
        holders = " ".join(self._mention(h.user, h.name) for h in record.holds)
        if deadline.rule == "idle":
            text = (
                f"⏳ {record.name} ({record.id}) has been idle since {self._local(deadline.idle_since)} "
                f"and will be terminated at {at} unless someone says `!emr lock`."
            )
        elif deadline.rule == "end_of_day":
            text = f"⏳ End of day: {record.name} ({record.id}) will be terminated at {at}"
            text += f", although {holders} still hold it" if holders else ""
            text += ". A holder can keep it longer with `!emr overtime [HH:MM]`."
        else:
            text = f"⏳ Overtime ends: {record.name} ({record.id}) will be terminated at {at}."
            text += f" Holders: {holders}." if holders else ""
        self._announce(text)

    def _terminate_by_rule(self, cluster_id: str, rule: str) -> None:
        with self._lock:
            state = self._load()
            record = state.clusters.get(cluster_id)
            if record is None or record.doomed is None:
                return  # a hold cancelled it, or it is already gone
            now = self.clock()
            try:
                self.adapter.terminate(record)
            except AwsError as error:
                state, is_new = termination_failed(state, cluster_id, error.code, str(error), now)
                self._save(state)
                if is_new:
                    self._announce(
                        f"⚠️ Could not terminate {record.name} ({record.id}) ({self._rule_text(rule)}): "
                        f"{_one_line(str(error))} I will keep trying."
                    )
                return
            self._save(terminated(state, cluster_id, now, rule=rule, who=None))
        holders = " ".join(self._mention(h.user, h.name) for h in record.holds)
        text = f"🛑 Terminated {record.name} ({record.id}): {self._rule_text(rule)}."
        self._announce(text + (f" It was held by {holders}." if holders else ""))

    def _rule_text(self, rule: str | None) -> str:
        if rule == "idle":
            return f"nobody held it for {self.settings.idle_minutes} minutes"
        if rule == "end_of_day":
            eod = self.settings.end_of_day
            return f"end of day ({eod:%H:%M})" if eod else "end of day"
        if rule == "overtime":
            return "its overtime ended"
        return rule or "terminated"

    # -- commands ---------------------------------------------------------------------
    @botcmd
    @answers
    def emr(self, msg: Any, args: str) -> str:
        """Share the EMR cluster: !emr status | lock | unlock | terminate | overtime | history | doctor."""
        word = args.split()[0] if args.split() else ""
        if not word:
            raise UsageError("Say what to do: !emr " + " | ".join(SUBCOMMANDS) + " (details: !help EMR).")
        raise UsageError(f"Unknown subcommand {self._inert(word)}: try !emr " + " | ".join(SUBCOMMANDS) + ".")

    @botcmd
    @answers
    def emr_status(self, msg: Any, args: str) -> str | None:
        """Show each managed cluster: state, uptime, holders, and the next automatic termination. Usage: !emr status [CLUSTER]"""
        words = args.split()
        if len(words) > 1:
            raise UsageError("!emr status takes at most one cluster name or id.")
        state, clusters = self._refresh()
        if not clusters:
            return self._no_cluster_text()
        shown = [self._resolve(clusters, words[0])] if words else clusters
        # A listing taken just before a termination may still name a cluster the state forgot.
        shown = [c for c in shown if c.id in state.clusters]
        if not shown:
            return self._no_cluster_text()
        now = self.clock()
        if self._on_slack:
            # One card (a Slack attachment) per cluster, in the channel the command came
            # from (or the DM); send_card(in_reply_to=msg) would open a thread instead.
            to = msg.to if msg.is_group else msg.frm
            for cluster in shown:
                self.send_card(to=to, **self._status_card(state, state.clusters[cluster.id], cluster, now))
            return None
        return "\n".join(self._status_lines(state, state.clusters[c.id], c, now) for c in shown)

    @botcmd
    @answers
    def emr_lock(self, msg: Any, args: str) -> str:
        """Hold a cluster while you use it (several people can hold it); cancels the idle countdown. Usage: !emr lock [CLUSTER] [REASON…]"""
        cluster, reason = self._cluster_and_rest(args)
        reason = " ".join(reason.split())
        if len(reason) > REASON_LIMIT:
            raise UsageError(f"The reason is {len(reason)} characters long; keep it under {REASON_LIMIT}.")
        user, name = self._who(msg)
        with self._lock:
            state = self._load()
            if cluster.id not in state.clusters:
                raise UnknownClusterError(f"{cluster.name} ({cluster.id}) is no longer running; see !emr status.")
            now = self.clock()
            state = add_hold(state, cluster.id, user, name, reason, now)
            self._save(state)
        record = state.clusters[cluster.id]
        text = f"🔒 {name} holds {cluster.name} ({cluster.id}). Holders: {self._holders_text(record)}."
        deadline = next_deadline(state, record, self.policy, now)
        if record.doomed is not None:
            text += " ⚠️ It is being terminated for the end of day; a holder can still ask for `!emr overtime`."
        elif deadline is not None:
            text += f" Next: {self._deadline_text(deadline, now)}."
        return text

    @botcmd
    @answers
    def emr_unlock(self, msg: Any, args: str) -> str:
        """Release your hold on a cluster; admins can release someone else's with --user NAME. Usage: !emr unlock [CLUSTER] [--user NAME]"""
        words = args.split()
        target_name: str | None = None
        if "--user" in words:
            at = words.index("--user")
            if at + 1 >= len(words):
                raise UsageError("--user needs a name: !emr unlock [CLUSTER] --user NAME")
            target_name = _user_ref(words[at + 1])
            words = words[:at] + words[at + 2 :]
        self._reject_options(words)
        if len(words) > 1:
            raise UsageError("!emr unlock takes at most one cluster name or id (and --user NAME for admins).")
        _, clusters = self._refresh()
        cluster = self._pick(clusters, words[0] if words else None)
        user, name = self._who(msg)
        with self._lock:
            state = self._load()
            record = state.clusters.get(cluster.id)
            if record is None:
                raise UnknownClusterError(f"{cluster.name} ({cluster.id}) is no longer running; see !emr status.")
            if target_name is not None and target_name not in (user, name):
                if not self._is_admin(msg):
                    raise RefusedError("Only admins can release someone else's hold.")
                hold = next((h for h in record.holds if target_name in (h.user, h.name, h.user.lstrip("@"))), None)
                if hold is None:
                    raise RefusedError(
                        f"{self._inert(target_name)} does not hold {cluster.name}; "
                        f"holders: {self._holders_text(record)}."
                    )
                now = self.clock()
                state = drop_hold(state, cluster.id, hold.user, now, by=name)
                self._save(state)
                released: Hold = hold
            else:
                own = record.holder(user)
                if own is None:
                    raise RefusedError(f"You don't hold {cluster.name}; holders: {self._holders_text(record)}.")
                now = self.clock()
                released = own
                state = drop_hold(state, cluster.id, user, now)
                self._save(state)
        record = state.clusters[cluster.id]
        who = "You" if released.user == user else self._mention(released.user, released.name)
        text = f"🔓 {who} released {cluster.name} ({cluster.id})"
        if released.user != user:
            text += f" (released by {name})"
        if record.holds:
            return text + f". Still held by {self._holders_text(record)}."
        deadline = next_deadline(state, record, self.policy, now)
        tail = f" Nobody holds it now: {self._deadline_text(deadline, now)}." if deadline else " Nobody holds it now."
        return text + "." + tail

    @botcmd
    @answers
    def emr_terminate(self, msg: Any, args: str) -> str:
        """Terminate a cluster now; refused while others hold it unless an admin adds --force. Usage: !emr terminate [CLUSTER] [--force]"""
        words = args.split()
        force = "--force" in words
        words = [w for w in words if w != "--force"]
        self._reject_options(words)
        if len(words) > 1:
            raise UsageError("!emr terminate takes at most one cluster name or id, and --force.")
        _, clusters = self._refresh()
        cluster = self._pick(clusters, words[0] if words else None)
        user, name = self._who(msg)
        with self._lock:
            state = self._load()
            record = state.clusters.get(cluster.id)
            if record is None:
                raise UnknownClusterError(f"{cluster.name} ({cluster.id}) is no longer running; see !emr status.")
            others = [h for h in record.holds if h.user != user]
            if others and not force:
                raise RefusedError(
                    f"{cluster.name} is held by {', '.join(self._hold_text(h, mention=True) for h in others)}: ask them, "
                    "or an admin can add --force."
                )
            if others and not self._is_admin(msg):
                raise RefusedError(
                    f"Only admins can --force the termination of a cluster held by others ({cluster.name})."
                )
            self.adapter.terminate(record)
            now = self.clock()
            self._save(terminated(state, cluster.id, now, rule=None, who=name))
        text = f"🛑 Terminating {cluster.name} ({cluster.id}) at {name}'s request."
        if others:
            text += " Its holders were " + " ".join(self._mention(h.user, h.name) for h in others) + "."
            self._announce(
                f"🛑 {name} force-terminated {cluster.name} ({cluster.id}), held by "
                + " ".join(self._mention(h.user, h.name) for h in others)
                + "."
            )
        return text

    @botcmd
    @answers
    def emr_overtime(self, msg: Any, args: str) -> str:
        """Keep a cluster you hold past tonight's end of day, until HH:MM (default 2 h later). Usage: !emr overtime [CLUSTER] [HH:MM]"""
        words = args.split()
        self._reject_options(words)
        hhmm = None
        if words and re.fullmatch(r"\d{1,2}:\d{2}", words[-1]):
            try:
                hhmm = parse_hhmm("HH:MM", words.pop())
            except ConfigError:
                raise UsageError("The time must be HH:MM, 00:00–23:59.") from None
        if len(words) > 1:
            raise UsageError("!emr overtime takes at most one cluster name or id, and a time HH:MM.")
        _, clusters = self._refresh()
        cluster = self._pick(clusters, words[0] if words else None)
        user, name = self._who(msg)
        with self._lock:
            state = self._load()
            record = state.clusters.get(cluster.id)
            if record is None:
                raise UnknownClusterError(f"{cluster.name} ({cluster.id}) is no longer running; see !emr status.")
            if record.holder(user) is None:
                raise RefusedError(f"Only holders can ask for overtime: `!emr lock {cluster.name}` first.")
            now = self.clock()
            try:
                until, day = overtime_until(self.policy, state, hhmm, now)
            except ValueError as problem:
                raise RefusedError(f"No overtime: {problem}.") from None
            state = set_overtime(state, cluster.id, user, name, until, day, now)
            self._save(state)
        text = f"🌙 {cluster.name} ({cluster.id}) stays past end of day until {self._local(until)} ({name}'s overtime)."
        self._announce(text)
        return text

    @botcmd
    @answers
    def emr_history(self, msg: Any, args: str) -> str:
        """The last N events (holds, releases, warnings, overtime, terminations). Usage: !emr history [N]"""
        words = args.split()
        if len(words) > 1 or (words and not words[0].isdigit()):
            raise UsageError(f"!emr history takes one number N (1–{HISTORY_MAX}).")
        count = int(words[0]) if words else HISTORY_DEFAULT
        if not 1 <= count <= HISTORY_MAX:
            raise UsageError(f"N must be between 1 and {HISTORY_MAX}.")
        with self._lock:
            events = self._load().history[-count:]
        if not events:
            return "No events yet."
        lines = []
        for e in events:
            who = e.who or (RULE_WORDS.get(e.rule or "", e.rule) if e.rule else "the bot")
            detail = f" — {self._inert(e.detail)}" if e.detail and e.kind in ("hold", "failed") else ""
            if e.kind in ("warning", "overtime") and e.detail:
                detail = f" — until {self._local(datetime.fromisoformat(e.detail))}"
            elif e.detail and e.kind not in ("hold", "failed"):
                detail = f" — {e.detail}"
            lines.append(f"{self._local(e.at, with_day=True)} {e.kind} {e.name} ({e.cluster}) by {who}{detail}")
        return "\n".join(lines)

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
            room = self.build_identifier(channel)
            joined = getattr(room, "joined", None)
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

    def _bot_name(self) -> str:
        identifier = self._bot.bot_identifier
        return str(getattr(identifier, "nick", None) or getattr(identifier, "username", None) or "the bot")

    # -- helpers --------------------------------------------------------------------
    def _resolve(self, clusters: list[ClusterInfo], word: str) -> ClusterInfo:
        for cluster in clusters:
            if word in (cluster.id, cluster.name):
                return cluster
        lowered = [c for c in clusters if c.name.lower() == word.lower()]
        if len(lowered) == 1:
            return lowered[0]
        raise UnknownClusterError(
            f"No managed cluster called {self._inert(word)} is running (managed: "
            f"{', '.join(c.name for c in clusters) or 'none'}); see !emr status."
        )

    def _pick(self, clusters: list[ClusterInfo], word: str | None) -> ClusterInfo:
        if not clusters:
            raise NoClusterError(self._no_cluster_text())
        if word is not None:
            return self._resolve(clusters, word)
        if len(clusters) > 1:
            raise UsageError(f"Several clusters are running ({', '.join(c.name for c in clusters)}): name one.")
        return clusters[0]

    def _cluster_and_rest(self, args: str) -> tuple[ClusterInfo, str]:
        """``[CLUSTER] [REST…]``: the first word names a cluster when it is one (or looks like an id)."""
        words = args.split(maxsplit=1)
        if words and words[0].startswith("--"):
            raise UsageError(f"Unknown option {self._inert(words[0])}.")
        _, clusters = self._refresh()
        if not clusters:
            raise NoClusterError(self._no_cluster_text())
        if words:
            first = words[0]
            match = [c for c in clusters if first in (c.id, c.name)]
            if match:
                return match[0], words[1] if len(words) > 1 else ""
            if re.fullmatch(r"j-[A-Z0-9]{8,}", first):
                self._resolve(clusters, first)  # raises: an id, but not of a managed cluster
        return self._pick(clusters, None), args

    def _reject_options(self, words: list[str]) -> None:
        unknown = [w for w in words if w.startswith("--")]
        if unknown:
            raise UsageError(f"Unknown option {self._inert(unknown[0])}.")

    def _no_cluster_text(self) -> str:
        return (
            f"No managed EMR cluster is running in account {self.settings.account_id} "
            f"({self.settings.region}, tag {self.settings.cluster_tag})."
        )

    def _status_lines(self, state: State, record: ClusterRecord, cluster: ClusterInfo, now: datetime) -> str:
        started = cluster.created_at or record.first_seen
        lines = [f"{cluster.name} ({cluster.id}) — {cluster.state}, up {_duration(now - started)}"]
        if record.holds:
            lines.append("  held by " + "; ".join(self._hold_text(h) for h in record.holds))
        else:
            lines.append("  held by nobody")
        if record.overtime:
            lines.append(f"  overtime until {self._local(record.overtime.until)} (asked by {record.overtime.by})")
        if record.doomed is not None:
            lines.append(f"  next: being terminated now ({self._rule_text(record.doomed.rule)})")
        else:
            deadline = next_deadline(state, record, self.policy, now)
            if deadline is not None:
                lines.append(f"  next: {self._deadline_text(deadline, now)}")
            if record.state != "WAITING" and not record.holds:
                lines.append(f"  not idle while {record.state}: the idle clock starts when it is WAITING")
        return "\n".join(lines)

    def _status_card(self, state: State, record: ClusterRecord, cluster: ClusterInfo, now: datetime) -> dict[str, Any]:
        """``send_card`` arguments for one cluster: the same facts as :meth:`_status_lines`.

        The colour says what matters at a glance: red, being terminated; orange, held;
        blue, busy (never idle); green, WAITING with the idle countdown running.
        """
        started = cluster.created_at or record.first_seen
        holders = "\n".join(self._hold_text(h, mention=True) for h in record.holds) or "nobody"
        notes = []
        if record.doomed is not None:
            color = COLOR_DOOMED
            next_action = f"being terminated now ({self._rule_text(record.doomed.rule)})"
        else:
            color = COLOR_HELD if record.holds else COLOR_BUSY if record.state != "WAITING" else COLOR_IDLE
            deadline = next_deadline(state, record, self.policy, now)
            next_action = self._deadline_text(deadline, now) if deadline is not None else "none"
            if record.state != "WAITING" and not record.holds:
                notes.append(f"Not idle while {record.state}: the idle clock starts when it is WAITING.")
        if record.overtime:
            by = self._mention(record.overtime.by, record.overtime.by)
            notes.append(f"Overtime until {self._local(record.overtime.until)} (asked by {by}).")
        return {
            "title": f"{cluster.name} ({cluster.id})",
            "link": self._console_link(cluster.id),
            "body": " ".join(notes),
            "color": color,
            "fields": (
                ("State", cluster.state),
                ("Up for", _duration(now - started)),
                ("Holders", holders),
                ("Next action", next_action),
            ),
        }

    def _console_link(self, cluster_id: str) -> str | None:
        """The cluster's page in the EMR console (account B must be the console's account)."""
        if self.settings.endpoint_url is not None or not self.settings.role_arn.startswith("arn:aws:"):
            return None  # an emulator (no console), or a partition with another console domain
        region = self.settings.region
        return f"https://{region}.console.aws.amazon.com/emr/home?region={region}#/clusterDetails/{cluster_id}"

    def _deadline_text(self, deadline: Deadline, now: datetime) -> str:
        at = self._local(deadline.at, with_day=deadline.at - now > timedelta(hours=20))
        if deadline.rule == "idle":
            return f"terminated at {at} unless someone locks it (idle since {self._local(deadline.idle_since)})"
        if deadline.rule == "end_of_day":
            return f"terminated at {at} (end of day)"
        return f"terminated at {at} (when its overtime ends)"

    def _hold_text(self, hold: Hold, *, mention: bool = False) -> str:
        """``alice since 10:05: `reason```; *mention* makes the holder a Slack mention (they are pinged)."""
        reason = f": {self._inert(hold.reason, REASON_LIMIT)}" if hold.reason else ""
        who = self._mention(hold.user, hold.name) if mention and self._on_slack else hold.name
        return f"{who} since {self._local(hold.since)}{reason}"

    def _holders_text(self, record: ClusterRecord) -> str:
        return ", ".join(self._hold_text(h) for h in record.holds) or "nobody"

    def _local(self, moment: datetime | None, *, with_day: bool = False) -> str:
        if moment is None:
            return "?"
        local = moment.astimezone(self.settings.timezone)
        return local.strftime("%m-%d %H:%M") if with_day else local.strftime("%H:%M")

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
    def _on_slack(self) -> bool:
        """Replies go to Slack: mentions are ``<@U…>``, status is a card, user text is escaped."""
        return getattr(self._bot, "mode", "") in SLACK_MODES

    def _mention(self, user: str, name: str) -> str:
        # On SlackV3 the hold's user is msg.frm.person, the Slack user id (U…).
        return f"<@{user}>" if self._on_slack else f"@{name}"

    def _inert(self, text: str, limit: int = 60) -> str:
        """User-supplied text, shown so that chat markup in it does nothing (see :func:`_quote`)."""
        return _quote(text, limit, slack=self._on_slack)

    def _announce(self, text: str) -> None:
        """Post to NOTIFY_CHANNEL (and always log, so nothing depends on chat alone)."""
        log.info("announce: %s", text)
        channel = self.settings.notify_channel
        if not channel:
            return
        try:
            self.send(self.build_identifier(channel), text)
        except Exception:
            log.exception("Could not post to NOTIFY_CHANNEL %s", channel)


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


def _quote(text: str, limit: int = 60, *, slack: bool = False) -> str:
    """Show user input inert: one line, bounded, in code quotes so chat markup does not apply.

    For Slack that is not enough: Slack parses ``<!channel>``, ``<@U…>`` and ``<url|text>``
    everywhere, code spans included, so ``&``, ``<`` and ``>`` become ``&amp;``, ``&lt;`` and
    ``&gt;`` as Slack asks. (The SlackV3 backend's Markdown pass turns entities back into
    characters, except inside code spans, hence both.) The backend also posts with
    ``link_names``, which may turn a bare ``@here`` or ``@group`` into a ping: a word joiner
    after each ``@`` keeps it a plain, identical-looking character.
    """
    flat = CONTROL_RE.sub(" ", text)
    if len(flat) > limit:
        flat = flat[: limit - 1] + "…"
    flat = flat.replace("`", "'")
    if slack:
        flat = flat.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("@", "@\u2060")
    return "`" + flat + "`"


def _user_ref(word: str) -> str:
    """A user named in a command: ``alice``, ``@alice``, or a Slack mention ``<@U0ALICE>`` (its id)."""
    mention = SLACK_MENTION_RE.fullmatch(word)
    return mention.group(1) if mention else word.lstrip("@")


def _duration(delta: timedelta) -> str:
    minutes = max(0, int(delta.total_seconds() // 60))
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m" if hours else f"{minutes}m"


__all__ = ["EMR", "UTC"]
