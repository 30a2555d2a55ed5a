"""EMR: share the team's Amazon EMR cluster from chat.

The plugin is Errbot wiring only (DESIGN §15): a command parses its arguments,
calls one method of :class:`emr_service.Service`, and hands the result to
:class:`emr_view.View`. Here: activation (settings, the AssumeRole session of
:mod:`crossaccount`, the adapter, the service, the poller, the Slack click
listener of :mod:`emr_slack`), the commands' arguments, who asks, and posting
to the chat (replies, Slack cards and blocks, the report's chart, NOTIFY_CHANNEL).

The service owns the state and the usage ledger (this plugin's storage, under
``state`` and ``ledger``), the poller's tick and the commands' actions; the pure
layers (:mod:`emr_state`, :mod:`emr_rules`, :mod:`emr_decisions`,
:mod:`emr_ledger`, :mod:`emr_costs`) decide, :mod:`emr_adapter` talks to AWS.
The STS token is stored under ``sts``. The README's "How it is built" lists
every module.
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
from datetime import datetime
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
    "emrchatops.aws.prices",
    "emr_adapter",
    "emr_view",
    "emr_chart",
    "emr_doctor",
    "emr_clicks",
    "emr_service",
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
from crossaccount import CrossAccountSession, RoleTarget, utc_now
from emr_adapter import EmrAdapter
from emr_blocks import apology, message_blocks, refused
from emr_chart import preload as preload_chart
from emr_chart import render as render_chart
from emr_clicks import Buttons
from emr_doctor import Doctor, notify_check
from emr_errors import ConfigError, EmrChatopsError, RefusedError, UsageError, one_line
from emr_ledger import REPORT_MAX_DAYS
from emr_service import Service, StoredToken, Who
from emr_settings import Settings, from_mapping, parse_hhmm
from emr_view import View, typed_from_slack
from emrchatops.aws.prices import ApiPrices

_stamp_siblings()

log = logging.getLogger("errbot.plugins.emr")

SUBCOMMANDS = ("status", "start", "lock", "unlock", "terminate", "overtime", "history", "report", "doctor")
REPORT_DEFAULT_DAYS = 7
HISTORY_DEFAULT = 10
HISTORY_MAX = 50
ARGS_LIMIT = 1000
TOKEN_KEY = "sts"  # noqa: S105 - a storage key name, not a secret
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
                raise UsageError(self.view.too_long(len(args), ARGS_LIMIT))
            return method(self, msg, args)
        except EmrChatopsError as error:
            return refused(one_line(str(error)))
        except Exception:
            log.exception("!emr command failed: %s", method.__name__)
            return apology

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
        self._generation = getattr(self, "_generation", 0) + 1  # this activation's poller (see tick)
        # One service for the plugin's life, started afresh at each activation (see emr_service.Service).
        service = getattr(self, "service", None) or Service(
            self,  # the plugin's persistent storage: state under "state", the usage ledger under "ledger"
            clock=lambda: self.clock(),
            view=lambda: self.view,
            announce=lambda text, buttons: self._announce(text, buttons),
        )
        service.reset(self.settings)
        self.service: Service = service
        super().activate()
        target = RoleTarget(
            role_arn=self.settings.role_arn,
            region=self.settings.region,
            external_id=self.settings.external_id,
            endpoint_url=self.settings.endpoint_url,
            session_seconds=self.settings.session_seconds,
        )
        self.session = CrossAccountSession(target, StoredToken(self, TOKEN_KEY), clock=lambda: self.clock())
        self.adapter = EmrAdapter(self.session, self.settings.cluster_tag, clock=lambda: self.clock())
        # PRICES=api: the bot's own identity reads AWS's Price List once a day (DESIGN §19).
        prices = ApiPrices(self.settings.prices_api) if self.settings.prices_api else None
        self.service.open(self.adapter, prices)  # refuses state, a ledger or prices it cannot read (or a newer format)
        self.start_poller(self.settings.poll_seconds, self.tick, args=(self._generation,))
        if self._on_slack:  # the report's chart: matplotlib imported meanwhile, not at the first report
            threading.Thread(target=preload_chart, name="emr-chart-preload", daemon=True).start()
        # Slack buttons: one click listener on the backend's Socket Mode client (none on other backends).
        self._clicks = emr_slack.Clicks(self)
        emr_slack.attach(self._bot, self._clicks)
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
        service = getattr(self, "service", None)
        if service is not None:
            with service.closing():  # a tick in flight finishes its state change before the storage closes
                super().deactivate()
        else:
            super().deactivate()

    def tick(self, generation: int | None = None) -> None:
        """One pass of the automatic rules (:meth:`emr_service.Service.tick`). Never raises.

        *generation* identifies the activation that started this poller: after a
        deactivate + activate while a tick was in flight, Errbot would re-arm the
        old timer when that tick returns (its (method, args) is listed again), so
        the poller carries its activation's number and a stale one stops.
        """
        if generation is not None and generation != self._generation:
            return
        self.service.tick()
        self._sweep_buttons()

    def _sweep_buttons(self) -> None:
        """Take the buttons off warnings and reminders that became moot (Slack only; never raises)."""
        clicks = getattr(self, "_clicks", None)
        if clicks is None or not self._on_slack or not clicks.watching:
            return  # nothing posted with buttons: no state to read
        try:
            clicks.sweep(self.service.state(), self.clock())
        except Exception:
            log.warning("Slack buttons: the sweep of moot buttons failed", exc_info=True)

    # -- commands ---------------------------------------------------------------------
    @botcmd
    @answers
    def emr(self, msg: Any, args: str) -> str:
        """Share the EMR cluster: !emr status | start | lock | unlock | terminate | overtime | history | report | doctor."""
        word = args.split()[0] if args.split() else ""
        if not word:
            raise UsageError(self.view.what_to_do(SUBCOMMANDS))
        raise UsageError(self.view.unknown_subcommand(word, SUBCOMMANDS))

    @botcmd
    @answers
    def emr_status(self, msg: Any, args: str) -> str | None:
        """Show each managed cluster: state, uptime, holders, and the next automatic termination. Usage: !emr status [CLUSTER]"""
        _reject_options(args.split(), self.view)
        status = self.service.status(args)
        if not status.records:
            return self.view.no_cluster(status.state)
        state, now, problem, costs = status.state, status.now, status.activity_problem, status.costs
        if self._on_slack:
            # One card (a Slack attachment with a plain-text fallback) per cluster.
            for record, cluster in status.records:
                self._reply_slack(msg, self.view.status_message(state, record, cluster, now, problem, costs[record.id]))
            return None
        return "\n".join(
            self.view.status_lines(state, record, cluster, now, problem, costs[record.id])
            for record, cluster in status.records
        )

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
        figures = self.service.report(days)
        text = self.view.report(figures.report, days, figures.now)
        if not self._on_slack:
            return text
        to = msg.to if msg.is_group else msg.frm
        self.send(to, text)
        return self._upload_chart(msg, render_chart(figures.report, self.view.report_title(days)), days)

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
        _reject_first_option(args, self.view)
        s = self.service.start(self._person(msg), args, templates)
        return self.view.starting(s.state, s.record, s.template, s.now, evening=s.evening)

    @botcmd
    @answers
    def emr_lock(self, msg: Any, args: str) -> str:
        """Hold a cluster while you use it (several people can hold it); cancels the idle countdown. Usage: !emr lock [CLUSTER] [REASON…]"""
        return self._lock_command(msg, args)

    def _lock_command(self, msg: Any, args: str) -> str:
        _reject_first_option(args, self.view)
        who = self._person(msg)
        locked = self.service.lock(who, args)
        return self.view.locked(
            locked.state, locked.record, who.name, locked.now, overtime_possible=locked.overtime_possible
        )

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
                raise UsageError(self.view.user_needs_name)
            target = _user_ref(words[at + 1])
            words = words[:at] + words[at + 2 :]
        _reject_options(words, self.view)
        who = self._person(msg)
        released = self.service.unlock(who, " ".join(words), target)
        return self.view.released(released.state, released.record, released.hold, who.user, who.name, released.now)

    @botcmd
    @answers
    def emr_terminate(self, msg: Any, args: str) -> str:
        """Terminate a cluster now; refused while others hold it unless an admin adds --force. Usage: !emr terminate [CLUSTER] [--force]"""
        words = args.split()
        force = "--force" in words
        words = [w for w in words if w != "--force"]
        _reject_options(words, self.view)
        who = self._person(msg)
        terminating = self.service.terminate(who, " ".join(words), force=force)
        return self.view.terminating(terminating.record, who.name, terminating.others)

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
                raise UsageError(self.view.bad_time) from None
        who = self._person(msg)
        overtime = self.service.overtime(who, " ".join(words), hhmm)  # announced to NOTIFY_CHANNEL too
        return self.view.overtime_set(overtime.record, who.name, overtime.until)

    @botcmd
    @answers
    def emr_history(self, msg: Any, args: str) -> str:
        """The last N events (holds, releases, warnings, overtime, terminations). Usage: !emr history [N]"""
        words = args.split()
        if len(words) > 1 or (words and not COUNT_WORD_RE.fullmatch(words[0])):
            raise UsageError(self.view.history_usage(HISTORY_MAX))
        count = int(words[0]) if words else HISTORY_DEFAULT
        if not 1 <= count <= HISTORY_MAX:
            raise UsageError(self.view.history_range(HISTORY_MAX))
        return self.view.history(self.service.history(count))

    @botcmd
    @answers
    def emr_doctor(self, msg: Any, args: str) -> str:
        """Check the whole chain (identity, AssumeRole, EMR permissions, clusters, config) and say what to fix."""
        if args.split():
            raise UsageError(self.view.doctor_usage)
        state = self.service.state()
        notify = notify_check(
            self.settings.notify_channel, self._slack_member_of if self._on_slack else None, self._bot_name
        )
        prices = self.service.price_reader, self.service.prices_kept()
        return Doctor(self.settings, self.session, self.clock, *prices).report(state, notify)

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

    def _person(self, msg: Any) -> Who:
        """Who sent *msg*, as the service takes it."""
        user, name = self._who(msg)
        return Who(user, name, admin=self._is_admin(msg))

    def _is_admin(self, msg: Any) -> bool:
        admins = self.bot_config.BOT_ADMINS
        who = getattr(msg.frm, "aclattr", None) or str(msg.frm)
        return any(fnmatch.fnmatchcase(str(who), pattern) for pattern in admins)

    @property
    def view(self) -> View:
        """The wording, rendered for the chat this bot is on."""
        return View(self.settings, self.service.policy, slack=self._on_slack)

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
                blocks = message_blocks(text, buttons)
                posted = self._send_blocks(self.build_identifier(channel), text, blocks)
                if posted is not None:  # watched until its buttons are moot (emr_slack.Clicks.sweep)
                    self._clicks.remember(*posted, buttons, blocks)
            else:
                self.send(self.build_identifier(channel), text)
        except Exception:
            log.exception("Could not post to NOTIFY_CHANNEL %s", channel)

    # -- Slack buttons (DESIGN §14; the listener is in emr_slack) -------------------------------------
    def _send_blocks(self, to: Any, text: str, blocks: list[dict[str, Any]]) -> tuple[str, str] | None:
        """A Block Kit message through the backend (which keeps *text*, converted like any reply, as its fallback).

        Returns (channel id, ts) of the message Slack made, None if it said none.
        """
        msg = self._bot.build_message(text)
        msg.to, msg.frm = to, self._bot.bot_identifier
        msg.extras["blocks"] = blocks
        self._bot.send_message(msg)
        stamps = msg.extras.get("ts") or []
        channel = getattr(to, "id", None)
        return (str(channel), str(stamps[-1])) if stamps and channel else None

    def run_click_command(self, command: str, msg: Any, cluster_id: str) -> str:
        """What a button does: the command it stands for, on its cluster, as the clicker (refusals raise)."""
        run = {"lock": self._lock_command, "unlock": self._unlock_command, "overtime": self._overtime_command}[command]
        return run(msg, cluster_id)


def _reject_options(words: list[str], view: View) -> None:
    unknown = [w for w in words if w.startswith("--")]
    if unknown:
        raise UsageError(view.unknown_option(unknown[0]))


def _reject_first_option(args: str, view: View) -> None:
    """Commands whose words end in free text (a reason): only a leading ``--word`` is an option."""
    first = args.split()[0] if args.split() else ""
    if first.startswith("--"):
        raise UsageError(view.unknown_option(first))


def _user_ref(word: str) -> str:
    """A user named in a command: ``alice``, ``@alice``, or a Slack mention ``<@U0ALICE>`` (its id)."""
    mention = SLACK_MENTION_RE.fullmatch(word)
    return mention.group(1) if mention else word.lstrip("@")


__all__ = ["EMR"]
