"""The model's vocabulary, written once: cluster states, ids, regions, time periods, rule names.

Every module that speaks of these imports them from here; none retypes them.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Literal

#: The states of a cluster that runs (and costs): what the bot manages.
ACTIVE_STATES = ("STARTING", "BOOTSTRAPPING", "RUNNING", "WAITING")
#: Never idle: a cluster starting, or running a step.
BUSY_STATES = frozenset({"STARTING", "BOOTSTRAPPING", "RUNNING"})
#: A cluster on its way up (status shows the time since the start).
STARTING_STATES = ("STARTING", "BOOTSTRAPPING")
ENDED_STATES = frozenset({"TERMINATING", "TERMINATED", "TERMINATED_WITH_ERRORS"})

#: An EMR cluster id as EMR writes it (``j-`` and upper-case letters and digits); people may type it in lower case.
CLUSTER_ID_RE = re.compile(r"j-[A-Z0-9]{8,30}")
CLUSTER_ID_TYPED_RE = re.compile(CLUSTER_ID_RE.pattern, re.IGNORECASE)
#: An AWS region code (``ap-northeast-1``, ``us-gov-west-1``).
REGION_RE = re.compile(r"^[a-z]{2}(?:-[a-z]+)+-\d$")

#: EMR publishes IsIdle once per this period.
ACTIVITY_PERIOD = timedelta(minutes=5)

#: The automatic rules that terminate a cluster.
Rule = Literal["idle", "end_of_day", "overtime"]
#: What a line of ``!emr history`` records.
EventKind = Literal[
    "hold",
    "release",
    "reminder",
    "expired",
    "warning",
    "overtime",
    "terminated",
    "failed",
    "cancelled",
    "ended",
    "unmanaged",
    "managed",
    "start",
    "ready",
    "start_failed",
]


def iso(value: datetime | None) -> str | None:
    """A moment as stored (ISO 8601 with its offset), or None."""
    return value.isoformat() if value else None


def parse_iso(value: str | None) -> datetime | None:
    """A stored moment back (see :func:`iso`), or None."""
    return datetime.fromisoformat(value) if value else None


__all__ = [
    "ACTIVE_STATES",
    "ACTIVITY_PERIOD",
    "BUSY_STATES",
    "CLUSTER_ID_RE",
    "CLUSTER_ID_TYPED_RE",
    "ENDED_STATES",
    "REGION_RE",
    "STARTING_STATES",
    "EventKind",
    "Rule",
    "iso",
    "parse_iso",
]
