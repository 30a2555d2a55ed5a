"""Pure decisions about Slack buttons (DESIGN §14): which buttons a message carries, what a click means.

Nothing here imports boto3, errbot or slack_sdk. A button is a command in
disguise: its action id names the command (:data:`ACTIONS`), its value names
the message it sits on (kind, cluster id, deadline, and for a hold reminder
the reminded holder). The value only *chooses* the command and tells a stale
message from a live one; who clicked comes from Slack's envelope, and whether
they may do it is decided exactly as for the typed command.

* :func:`buttons_for` — the buttons of a warning or reminder (the §14 table);
* :func:`parse_click` — an action id and value from Slack → a :class:`Click`, or
  None when it is not one of ours or is malformed (never trusted further);
* :func:`stale` — a click on a message whose cluster is gone or whose deadline
  has passed changes nothing;
* :func:`moot_after` — whether the message's buttons go once a click succeeded.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from emrchatops.domain.state import ClusterRecord
from emrchatops.domain.vocabulary import CLUSTER_ID_RE

PREFIX = "emr-chatops:"  # every action id and block id of this plugin starts so
VALUE_VERSION = "1"
VALUE_LIMIT = 200  # a value of ours is far shorter; Slack allows 2000

Kind = Literal["idle", "end_of_day", "overtime", "reminder"]
Command = Literal["lock", "unlock", "overtime"]
KINDS: tuple[Kind, ...] = ("idle", "end_of_day", "overtime", "reminder")

USER_ID_RE = re.compile(r"[UW][A-Z0-9]{2,20}")
DEADLINE_RE = re.compile(r"[0-9]{9,11}")  # whole seconds since the epoch


@dataclass(frozen=True)
class Action:
    """One button: its action id, label, the command it runs, and whether it is the primary choice."""

    id: str
    label: str
    command: Command
    primary: bool = False


KEEP = Action(PREFIX + "keep", "Keep it", "lock", primary=True)
OVERTIME = Action(PREFIX + "overtime", "Overtime 2 h", "overtime")
STILL = Action(PREFIX + "still", "Still using it", "lock", primary=True)
RELEASE = Action(PREFIX + "release", "Release", "unlock")
ACTIONS: dict[str, Action] = {a.id: a for a in (KEEP, OVERTIME, STILL, RELEASE)}

# The §14 table. The warning that an overtime ends is an end-of-day warning too: a holder may extend it.
BUTTONS: dict[Kind, tuple[Action, ...]] = {
    "idle": (KEEP,),
    "end_of_day": (OVERTIME, KEEP),
    "overtime": (OVERTIME, KEEP),
    "reminder": (STILL, RELEASE),
}


@dataclass(frozen=True)
class Buttons:
    """The buttons one message carries, and the value each of them sends back."""

    kind: Kind
    cluster_id: str
    deadline: datetime
    user: str = ""  # the reminded holder (hold reminders only)

    @property
    def actions(self) -> tuple[Action, ...]:
        return BUTTONS[self.kind]

    @property
    def value(self) -> str:
        seconds = int(self.deadline.timestamp())
        return "|".join((VALUE_VERSION, self.kind, self.cluster_id, str(seconds), self.user))


def buttons_for(kind: Kind, cluster_id: str, deadline: datetime, user: str = "") -> Buttons:
    return Buttons(kind, cluster_id, deadline.astimezone(UTC).replace(microsecond=0), user)


@dataclass(frozen=True)
class Click:
    """A click on one of our buttons, as far as the payload may be believed: which command, on which message."""

    action: Action
    buttons: Buttons

    @property
    def cluster_id(self) -> str:
        return self.buttons.cluster_id


def is_ours(action_id: object) -> bool:
    return isinstance(action_id, str) and action_id.startswith(PREFIX)


def parse_click(action_id: object, value: object) -> Click | None:
    """The click an action id and value describe, or None: not a button of ours, or not one we made.

    The action must be one of ours *and* allowed on the message kind the value names
    (a Release button on an idle warning is a forgery), and every part of the value
    must have the exact shape the plugin writes.
    """
    if not isinstance(action_id, str) or action_id not in ACTIONS:
        return None
    if not isinstance(value, str) or len(value) > VALUE_LIMIT:
        return None
    parts = value.split("|")
    if len(parts) != 5 or parts[0] != VALUE_VERSION:
        return None
    _, kind, cluster_id, seconds, user = parts
    if kind not in KINDS or not CLUSTER_ID_RE.fullmatch(cluster_id) or not DEADLINE_RE.fullmatch(seconds):
        return None
    if (kind == "reminder") != bool(user) or (user and not USER_ID_RE.fullmatch(user)):
        return None
    action = ACTIONS[action_id]
    typed_kind: Kind = kind  # checked against KINDS above (mypy narrows `in` a tuple of literals)
    if action not in BUTTONS[typed_kind]:
        return None
    deadline = datetime.fromtimestamp(int(seconds), UTC)
    return Click(action, Buttons(typed_kind, cluster_id, deadline, user))


Stale = Literal["gone", "passed"]


def stale(click: Click, *, running: bool, now: datetime) -> Stale | None:
    """Why a click must change nothing: its cluster is no longer running, or the message's deadline passed.

    A warning's deadline is the termination it announced; a reminder's is the end
    of the hold it asked about. At or after it, the message is history (the rule
    has acted, or the situation has moved on): ``!emr status`` says what holds now.
    """
    if not running:
        return "gone"
    if now >= click.buttons.deadline:
        return "passed"
    return None


def moot_after(click: Click, clicker: str) -> bool:
    """Whether the message's buttons go after *clicker*'s click succeeded.

    * an idle warning: a hold cancels the idle countdown — the warning passed;
    * an end-of-day warning: a hold does not stop the end of day (others may still
      keep or ask for overtime), overtime does — then the warning passed;
    * a hold reminder: the reminded holder confirmed or released their hold; another
      member's click (taking their own hold, or a refused release) leaves it open.
    """
    kind = click.buttons.kind
    if kind == "idle":
        return True
    if kind in ("end_of_day", "overtime"):
        return click.action.command == "overtime"
    return clicker == click.buttons.user


Moot = Literal["gone", "passed", "held", "overtime", "answered"]


def moot_now(buttons: Buttons, record: ClusterRecord | None, now: datetime) -> Moot | None:
    """Whether a posted message's buttons have become moot without a click (the poller sweeps them away).

    * ``gone``: the cluster is no longer running (terminated by a rule, a command or outside);
    * ``passed``: the message's deadline has passed;
    * ``held``: an idle warning, and someone holds the cluster now (the idle countdown is off);
    * ``overtime``: an end-of-day warning, and overtime now runs past its deadline;
    * ``answered``: a hold reminder, and the reminded holder confirmed or released their hold.

    The same facts a click is judged on (:func:`stale`): a message cleared here would have
    answered a click with "out of date" or made the click pointless.
    """
    if record is None or not record.listed:
        return "gone"
    if now >= buttons.deadline:
        return "passed"
    if buttons.kind == "idle" and record.holds:
        return "held"
    if buttons.kind in ("end_of_day", "overtime") and record.overtime and record.overtime.until > buttons.deadline:
        return "overtime"
    if buttons.kind == "reminder":
        hold = record.holder(buttons.user)
        if hold is None or hold.reminded_at is None:
            return "answered"
    return None


__all__ = [
    "ACTIONS",
    "BUTTONS",
    "KEEP",
    "OVERTIME",
    "PREFIX",
    "RELEASE",
    "STILL",
    "Action",
    "Buttons",
    "Click",
    "Kind",
    "Moot",
    "buttons_for",
    "is_ours",
    "moot_after",
    "moot_now",
    "parse_click",
    "stale",
]
