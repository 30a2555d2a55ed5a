"""EMR: share the team's Amazon EMR cluster from chat.

The plugin is Errbot glue only (DESIGN §16): a command parses its arguments,
calls one method of :class:`emrchatops.app.service.Service`, and hands the result to
the chat chosen once per backend (:class:`emrchatops.chat.base.Chat`) and its wording
(:class:`emrchatops.chat.words.View`). Here: activation (settings, the AssumeRole session
of :mod:`emrchatops.aws.crossaccount`, the adapter, the service, the poller, the chat),
the commands' arguments, and who asks.

The service owns the state (versioned, under ``state``) and the usage ledger (``ledger``) in
this plugin's storage, the poller's tick and the commands' actions; :mod:`emrchatops.domain`
decides, :mod:`emrchatops.aws` talks to AWS, :mod:`emrchatops.store` adapts the storage to the
service's ports. The STS token is stored under ``sts``. docs/contributing.md draws the layers.
"""

from __future__ import annotations

import contextlib
import fnmatch
import functools
import hashlib
import logging
import os
import re
import sys
from collections.abc import Callable
from datetime import datetime
from typing import Any

from errbot import BotPlugin, botcmd, cmdfilter

PACKAGE = "emrchatops"


def _package_modules() -> list[str]:
    return [name for name in sys.modules if name == PACKAGE or name.startswith(PACKAGE + ".")]


def _drop_package_if_changed() -> None:
    """Make ``!plugin reload EMR`` pick up an upgrade of the whole package.

    Errbot re-executes this file on reload, but the package's modules are cached
    in ``sys.modules``: without this, a reload after ``git pull`` would keep
    running the old rules, adapter and session code. When any loaded module of
    :mod:`emrchatops` changed on disk since it was imported (or vanished), every
    one of them is dropped, so the imports below load the whole package afresh
    and none keeps another's old classes. No list of modules to keep in step:
    the package prefix is the list.
    """
    loaded = [sys.modules[name] for name in _package_modules()]
    # The file's own mtime is compared, not the clock: tests move wall-clock time.
    if any(_mtime(m) != getattr(m, "_emr_mtime", _mtime(m)) for m in loaded):
        for name in _package_modules():
            del sys.modules[name]


def _mtime(module: Any) -> float:
    path = getattr(module, "__file__", None)
    try:
        return os.stat(path).st_mtime if path else 0.0
    except OSError:  # the file is gone (a module removed by the upgrade): reload
        return -1.0


def _stamp_package() -> None:
    for name in _package_modules():
        module = sys.modules[name]
        module.__dict__["_emr_mtime"] = _mtime(module)  # remembered on the module itself


_drop_package_if_changed()

from emrchatops.app.notices import target_of
from emrchatops.app.service import STATE_KEY, Service, Who
from emrchatops.aws.adapter import EmrAdapter
from emrchatops.aws.crossaccount import CrossAccountSession, RoleTarget, utc_now
from emrchatops.aws.fleet import Fleet
from emrchatops.aws.prices import ApiPrices
from emrchatops.chat.base import Chat, PlainChat
from emrchatops.chat.slack.chat import SlackChat, on_slack
from emrchatops.chat.slack.seams import backend_of
from emrchatops.chat.words import View, apology, refused
from emrchatops.domain.addressing import report_words
from emrchatops.domain.buttons import Buttons
from emrchatops.domain.decisions import NameProblem
from emrchatops.domain.errors import ConfigError, EmrChatopsError, RefusedError, UsageError, one_line
from emrchatops.domain.ledger import REPORT_MAX_DAYS
from emrchatops.domain.settings import Settings, from_mapping, parse_hhmm
from emrchatops.ops.doctor import Doctor, notify_check
from emrchatops.store.seams import storage_backend
from emrchatops.store.tokens import StoredToken
from emrchatops.store.versioned import (
    MappingStateStore,
    StoredLease,
    StoredOnce,
    VersionedStateStore,
    shared,
    versioned,
)

_stamp_package()

log = logging.getLogger("errbot.plugins.emr")

SUBCOMMANDS = ("status", "start", "lock", "unlock", "terminate", "overtime", "history", "report", "doctor")
REPORT_DEFAULT_DAYS = 7
HISTORY_DEFAULT = 10
ENVELOPE_SECONDS = 3600  # a Slack envelope id is remembered this long (Slack redelivers within minutes)
HISTORY_MAX = 50
ARGS_LIMIT = 1000
TOKEN_KEY = "sts"  # noqa: S105 - a storage key name, not a secret
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
            args = self.chat.markup.typed(args)  # what the person typed, not the chat's markup of it
            if len(args) > ARGS_LIMIT:
                raise UsageError(self.view.too_long(len(args), ARGS_LIMIT))
            return method(self, msg, args)
        except EmrChatopsError as error:
            return refused(one_line(self.view.error_text(error)))
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
        # The chat, chosen once per backend: nothing below asks "am I on Slack?" again.
        self.chat: Chat = SlackChat(self, backend_of(self)) if on_slack(backend_of(self)) else PlainChat(self)
        self._generation = getattr(self, "_generation", 0) + 1  # this activation's poller (see tick)
        # One service for the plugin's life, started afresh at each activation (see app.service.Service);
        # a new one only when `!plugin reload` brought a new package (its class is another one then).
        service = getattr(self, "service", None)
        if type(service) is not Service:
            service = Service(
                self,  # the plugin's persistent storage: state under "state", the usage ledger under "ledger"
                clock=lambda: self.clock(),
                announce=lambda notice, buttons: self._announce(
                    self.view.notice(notice), buttons, self._channel_of(target_of(notice))
                ),
            )
        service.reset(self.settings)
        self.service: Service = service
        super().activate()
        # One STS session per (role ARN, external id), its token under its own key; targets and regions
        # with the same role share it. One adapter per (target, region), all behind one fleet.
        self.sessions: dict[tuple[str, str | None], CrossAccountSession] = {}
        adapters: dict[tuple[str, str], EmrAdapter] = {}
        for served in self.settings.targets:
            session = self.sessions.get(served.session_key)
            if session is None:
                role = RoleTarget(
                    role_arn=served.role_arn,
                    region=served.regions[0],
                    external_id=served.external_id,
                    endpoint_url=self.settings.endpoint_url,
                    session_seconds=self.settings.session_seconds,
                )
                key = token_key(served.session_key, first=not self.sessions)
                session = CrossAccountSession(role, StoredToken(self, key), clock=lambda: self.clock())
                self.sessions[served.session_key] = session
            for region in served.regions:
                adapters[(served.name, region)] = EmrAdapter(
                    session.in_region(region),
                    served.cluster_tag,
                    clock=lambda: self.clock(),
                    target=served.name,
                    region=region,
                )
        self.session = next(iter(self.sessions.values()))  # the first target's (the doctor's)
        self.adapter = next(iter(adapters.values()))
        previous = getattr(self, "fleet", None)
        if previous is not None:
            previous.close()
        self.fleet = Fleet(adapters, max_parallel=self.settings.max_parallel)
        # The state is versioned in the storage plugin (SQLite, DynamoDB); on a table other instances share,
        # only the holder of the poller's lease runs the rules, and a Slack envelope is handled once.
        backend = storage_backend(self)
        states = VersionedStateStore(backend, STATE_KEY) if versioned(backend) else MappingStateStore(self, STATE_KEY)
        several = versioned(backend) and shared(backend)
        lease = StoredLease(backend, "poller", self.settings.lease_seconds) if several else None
        if several:
            self.chat.first = functools.partial(_first, StoredOnce(backend, ENVELOPE_SECONDS), self.clock)
        # PRICES=api: the bot's own identity reads AWS's Price List once a day (DESIGN §19).
        prices = ApiPrices(self.settings.prices_api) if self.settings.prices_api else None
        # Refuses state, a ledger or prices it cannot read (or a newer format).
        self.service.open(self.fleet, states, lease, prices)
        self.start_poller(self.settings.poll_seconds, self.tick, args=(self._generation,))
        self.chat.start()  # Slack: the click listener, the chart's import
        if len(adapters) == 1:
            log.info(
                "EMR plugin active: role %s, region %s, tag %s, poll every %ss",
                self.settings.role_arn,
                self.settings.region,
                self.settings.cluster_tag,
                self.settings.poll_seconds,
            )
        else:
            log.info(
                "EMR plugin active: %d targets (%s), %d listings per tick at most %d at once, poll every %ss",
                len(self.settings.targets),
                ", ".join(f"{t.name}: {t.account} in {', '.join(t.regions)}" for t in self.settings.targets),
                len(adapters),
                self.settings.max_parallel,
                self.settings.poll_seconds,
            )

    def deactivate(self) -> None:
        chat = getattr(self, "chat", None)
        if chat is not None:
            chat.stop()  # no click reaches a deactivated plugin
        with contextlib.suppress(ValueError, AttributeError):  # activation failed before the poller started
            self.stop_poller(self.tick, args=(self._generation,))
        # Errbot only cancels the timers when pollers are left over; stop_poller
        # just emptied that list, so cancel the pending timer here ourselves.
        for timer in list(self.current_timers):
            timer.cancel()
        fleet = getattr(self, "fleet", None)
        if fleet is not None:
            fleet.close()
        service = getattr(self, "service", None)
        if service is not None:
            with service.closing():  # a tick in flight finishes its state change before the storage closes
                super().deactivate()
        else:
            super().deactivate()

    def tick(self, generation: int | None = None) -> None:
        """One pass of the automatic rules (:meth:`emrchatops.app.service.Service.tick`). Never raises.

        *generation* identifies the activation that started this poller: after a
        deactivate + activate while a tick was in flight, Errbot would re-arm the
        old timer when that tick returns (its (method, args) is listed again), so
        the poller carries its activation's number and a stale one stops.
        """
        if generation is not None and generation != self._generation:
            return
        self.service.tick()
        self.chat.after_tick(self.service.state, self.clock())

    @cmdfilter
    def emr_once(self, msg: Any, cmd: str, args: Any, dry_run: bool) -> tuple[Any, Any, Any]:
        """Several instances on one Slack app: a message Slack redelivers (to the other connection) runs once."""
        chat = getattr(self, "chat", None)
        if dry_run or chat is None or chat.first is None:
            return msg, cmd, args
        key = chat.message_key(msg)
        if key is None or chat.first(key):
            return msg, cmd, args
        log.info("a redelivered message (%s) was handled already: %s not run again", key, cmd)
        return None, None, None

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
        """Show each managed cluster: state, uptime, holders, and the next automatic termination. Usage: !emr status [TARGET|CLUSTER]"""
        _reject_options(args.split(), self.view)
        status = self.service.status(args)
        if not status.records:
            return self.view.no_cluster(status.state)
        return self.chat.status(msg, self.view, status)

    @botcmd
    @answers
    def emr_report(self, msg: Any, args: str) -> str | None:
        """Per day: hours up, held, busy and idle, automatic terminations, cost, and what the rules saved. Usage: !emr report [DAYS] [TARGET]"""
        target = None
        if self.service.several:  # !emr report [DAYS] [TARGET]
            try:
                args, target = report_words(args, list(self.service.targets))
            except NameProblem as problem:
                raise UsageError(self.view.name_problem(problem)) from None
        words = args.split()
        if len(words) > 1 or (words and not COUNT_WORD_RE.fullmatch(words[0])):
            raise UsageError(self.view.report_usage(REPORT_MAX_DAYS))
        days = int(words[0]) if words else REPORT_DEFAULT_DAYS
        if not 1 <= days <= REPORT_MAX_DAYS:
            raise UsageError(self.view.report_usage(REPORT_MAX_DAYS))
        return self.chat.report(msg, self.view, self.service.report(days, target), days)

    @botcmd
    @answers
    def emr_start(self, msg: Any, args: str) -> str:
        """Start a cluster from a template; you hold it at once, and hear when it is ready. Usage: !emr start [TEMPLATE] [REASON…]"""
        if not any(t.templates for t in self.settings.targets):
            raise RefusedError(self.view.start_off)
        _reject_first_option(args, self.view)
        s = self.service.start(self._person(msg), args)
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
        notify = notify_check(self.settings.notify_channel, self.chat.member_check(), self._bot_name)
        prices = self.service.price_reader, self.service.prices_kept()
        # Cluster names and AWS's answers in it are shown as they are: escaped once, for the chat it goes to.
        return self.chat.markup.escape(Doctor(self.settings, self.session, self.clock, *prices).report(state, notify))

    def _bot_name(self) -> str:
        identifier = backend_of(self).bot_identifier
        return str(getattr(identifier, "nick", None) or getattr(identifier, "username", None) or "the bot")

    # -- chat glue ----------------------------------------------------------------------
    def sender(self, msg: Any) -> tuple[str, str]:
        """(stable identity, display name) of the sender."""
        frm = msg.frm
        person = getattr(frm, "person", None) or str(frm)
        name = getattr(frm, "nick", None) or getattr(frm, "fullname", None) or str(person)
        return str(person), str(name).lstrip("@")

    def _person(self, msg: Any) -> Who:
        """Who sent *msg*, as the service takes it."""
        user, name = self.sender(msg)
        return Who(user, name, admin=self._is_admin(msg), admin_of=self._admin_of(msg))

    def _is_admin(self, msg: Any) -> bool:
        """BOT_ADMINS: admins everywhere."""
        who = str(getattr(msg.frm, "aclattr", None) or msg.frm)
        return any(fnmatch.fnmatchcase(who, pattern) for pattern in self.bot_config.BOT_ADMINS)

    def _admin_of(self, msg: Any) -> frozenset[str]:
        """The targets whose ``admins`` (TARGETS_FILE) list the sender: admins on those targets' clusters only."""
        who = str(getattr(msg.frm, "aclattr", None) or msg.frm)
        # A target's admins are written as people call them (alice, not @alice or a Slack id).
        names = {n.lstrip("@") for n in (who, *self.sender(msg))}
        return frozenset(t.name for t in self.settings.targets if names & {a.lstrip("@") for a in t.admins})

    @property
    def view(self) -> View:
        """The wording, marked up for the chat this bot is on."""
        return View(self.settings, self.service.policy, self.chat.markup)

    def _channel_of(self, target: str | None) -> str | None:
        """Where a notice about *target* goes: its ``notify``; the bot's own notices: NOTIFY_CHANNEL."""
        for served in self.settings.targets:
            if served.name == target:
                return served.notify
        return self.settings.notify_channel

    def _announce(self, text: str, buttons: Buttons | None = None, channel: str | None = None) -> None:
        """Post to *channel* (by default NOTIFY_CHANNEL), and always log, so nothing depends on chat alone."""
        log.info("announce: %s", text)
        channel = channel if channel is not None else self.settings.notify_channel
        if not channel:
            return
        try:
            self.chat.announce(channel, text, buttons)
        except Exception:
            log.exception("Could not post to NOTIFY_CHANNEL %s", channel)

    def run_click_command(self, command: str, msg: Any, cluster_id: str) -> str:
        """What a button does: the command it stands for, on its cluster, as the clicker (refusals raise)."""
        run = {"lock": self._lock_command, "unlock": self._unlock_command, "overtime": self._overtime_command}[command]
        return run(msg, cluster_id)


def token_key(session_key: tuple[str, str | None], *, first: bool) -> str:
    """The storage key of one STS session's token: ``sts`` for the first target's (as before targets), else
    ``sts:`` and the role ARN, with a digest of the external id when there is one (never the id itself)."""
    role_arn, external_id = session_key
    if first:
        return TOKEN_KEY
    if external_id is None:
        return f"{TOKEN_KEY}:{role_arn}"
    return f"{TOKEN_KEY}:{role_arn}#{hashlib.sha256(external_id.encode()).hexdigest()[:12]}"


def _first(once: StoredOnce, clock: Callable[[], datetime], key: str) -> bool:
    return once.first(key, clock())


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
