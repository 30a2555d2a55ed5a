"""What a cluster costs (DESIGN §13): prices, instance composition, and cost over time.

Pure: no boto3, no errbot, no clock. The price table is plain data (the
shipped ``prices.json`` or an operator's ``PRICES_FILE``), validated by
:func:`price_table` with a message that names the problem. Costs are computed
from a cluster's *composition* (which instance types, how many, on-demand or
spot) over time: a list of ``(since, composition)`` segments, so a resize
mid-way is priced piecewise.

An instance type or region missing from the table is never guessed: the result
is a :class:`NoPrice` naming both. Spot capacity is priced at the on-demand
rate, and the figure is marked as an upper bound.

Each entry of a table says where it comes from (DESIGN §19): read from AWS's
Price List on a given day (``"read": "YYYY-MM-DD"``), or an estimate
(``"estimated": true``: the shipped table, compiled offline); an entry with
neither is the operator's own rate. A cost computed from an estimate is marked
:attr:`Cost.estimated`, and says so where it is shown.
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path

from emrchatops.domain.vocabulary import REGION_RE

SHIPPED_PRICES = Path(__file__).with_name("prices.json")
INSTANCE_TYPE_RE = re.compile(r"^[a-z][a-z0-9-]*\.[a-z0-9]+$")
HOUR = timedelta(hours=1)
PRICE_LIMIT = 1000.0  # $/h for one instance: above it, a table is wrong (the largest EC2 types cost ~$110/h)
ENTRY_KEYS = frozenset({"ec2", "emr", "read", "estimated"})
# Where AWS's Price List Query API answers (pricing:GetProducts): the prices of every region, from any of these.
PRICE_LIST_ENDPOINTS = ("us-east-1", "eu-central-1", "ap-south-1")


class PriceError(ValueError):
    """A price table that cannot be used; the message names the problem."""


@dataclass(frozen=True)
class Price:
    """One instance-hour, in USD: the EC2 on-demand price and EMR's own charge.

    *read*: the day it was read from AWS's Price List; *estimated*: not read, estimated
    (neither: an operator's own rate).
    """

    ec2: float
    emr: float
    estimated: bool = False
    read: date | None = None

    @property
    def per_hour(self) -> float:
        return self.ec2 + self.emr


@dataclass(frozen=True)
class PriceTable:
    """Prices per region and instance type, with where they came from."""

    source: str
    date: date
    regions: Mapping[str, Mapping[str, Price]]

    def price(self, region: str, instance_type: str) -> Price | None:
        return self.regions.get(region, {}).get(instance_type)


@dataclass(frozen=True)
class Instances:
    """Running instances of one type in one instance group (or one type of an instance fleet)."""

    instance_type: str
    count: int
    spot: bool = False


Composition = tuple[Instances, ...]


@dataclass(frozen=True)
class NoPrice:
    """A price the table does not have: the cost is unknown, never guessed."""

    instance_type: str
    region: str


@dataclass(frozen=True)
class Cost:
    """USD; *upper_bound* when spot capacity was priced at on-demand; *estimated* when an estimated price was used."""

    dollars: float
    upper_bound: bool = False
    estimated: bool = False

    def __add__(self, other: Cost) -> Cost:
        return Cost(
            self.dollars + other.dollars,
            self.upper_bound or other.upper_bound,
            self.estimated or other.estimated,
        )


ZERO = Cost(0.0)


@dataclass(frozen=True)
class Missing:
    """A price AWS's Price List did not give (or gave several of): left out, never invented."""

    instance_type: str
    region: str
    why: str  # "no EMR price", "several EC2 prices ($0.1, $0.2)"

    def __str__(self) -> str:
        return f"{self.why} for {self.instance_type} in {self.region} in AWS's Price List: left out"


@dataclass(frozen=True)
class PricesRead:
    """One read of AWS's Price List: the prices it gave (each marked read that *day*) and those it lacked."""

    day: date
    source: str
    prices: Mapping[str, Mapping[str, Price]]
    missing: tuple[Missing, ...] = ()

    def table(self) -> PriceTable | None:
        """The prices read, as a table (None if there is none)."""
        regions = {region: dict(types) for region, types in self.prices.items() if types}
        return PriceTable(self.source, self.day, regions) if regions else None


# -- the table -----------------------------------------------------------------------------


def price_table(data: object) -> PriceTable:
    """Validate a price table's plain data (the format of ``prices.json``); PriceError names the problem.

    Format: ``{"source": URL or text, "date": "YYYY-MM-DD", "currency": "USD",
    "regions": {REGION: {INSTANCE_TYPE: {"ec2": $/h, "emr": $/h}}}}``; an entry may add
    ``"read": "YYYY-MM-DD"`` (read from AWS's Price List that day) or ``"estimated": true``.
    """
    if not isinstance(data, Mapping):
        raise PriceError("not a JSON object")
    source = data.get("source")
    if not isinstance(source, str) or not source.strip():
        raise PriceError('"source" is missing: say where the prices come from')
    raw_date = data.get("date")
    try:
        when = date.fromisoformat(raw_date) if isinstance(raw_date, str) else None
    except ValueError:
        when = None
    if when is None:
        raise PriceError('"date" must be the day the prices were read, YYYY-MM-DD')
    if data.get("currency", "USD") != "USD":
        raise PriceError('"currency" must be USD')
    regions = data.get("regions")
    if not isinstance(regions, Mapping) or not regions:
        raise PriceError('"regions" must be an object of regions, each an object of instance types')
    table: dict[str, dict[str, Price]] = {}
    for region, types in regions.items():
        if not isinstance(region, str) or not REGION_RE.fullmatch(region):
            raise PriceError(f"{region!r} is not a region name (like us-east-1)")
        if not isinstance(types, Mapping) or not types:
            raise PriceError(f"region {region}: expected an object of instance types")
        table[region] = {}
        for instance_type, entry in types.items():
            where = f"{region} {instance_type}"
            if not isinstance(instance_type, str) or not INSTANCE_TYPE_RE.fullmatch(instance_type):
                raise PriceError(f"region {region}: {instance_type!r} is not an instance type (like m5.xlarge)")
            table[region][instance_type] = _entry(where, entry)
    return PriceTable(source=source.strip(), date=when, regions=table)


def _entry(where: str, entry: object) -> Price:
    if not isinstance(entry, Mapping) or not {"ec2", "emr"} <= set(entry) <= ENTRY_KEYS:
        raise PriceError(f'{where}: expected {{"ec2": $/h, "emr": $/h}}, and "read": "YYYY-MM-DD" or "estimated": true')
    values = [entry["ec2"], entry["emr"]]
    for value in values:
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise PriceError(f"{where}: prices must be numbers (USD per hour)")
        if not 0 <= value <= PRICE_LIMIT:
            raise PriceError(f"{where}: {value} is not a price per hour (0–{PRICE_LIMIT:g})")
    if "read" in entry and "estimated" in entry:
        raise PriceError(f"{where}: either read from AWS or estimated, not both")
    if "estimated" in entry and entry["estimated"] is not True:
        raise PriceError(f'{where}: "estimated" must be true (leave it out for a price that is not an estimate)')
    read: date | None = None
    if "read" in entry:
        try:
            read = date.fromisoformat(entry["read"]) if isinstance(entry["read"], str) else None
        except ValueError:
            read = None
        if read is None:
            raise PriceError(f'{where}: "read" must be the day it was read from AWS, YYYY-MM-DD')
    return Price(float(values[0]), float(values[1]), estimated="estimated" in entry, read=read)


def table_data(table: PriceTable) -> dict[str, object]:
    """A table as the plain data :func:`price_table` reads (the format of ``prices.json``)."""
    regions: dict[str, dict[str, dict[str, object]]] = {}
    for region, types in sorted(table.regions.items()):
        regions[region] = {}
        for instance_type, price in types.items():
            entry: dict[str, object] = {"ec2": price.ec2, "emr": price.emr}
            if price.read is not None:
                entry["read"] = price.read.isoformat()
            if price.estimated:
                entry["estimated"] = True
            regions[region][instance_type] = entry
    return {"source": table.source, "date": table.date.isoformat(), "currency": "USD", "regions": regions}


def read_prices(path: str | Path | None) -> PriceTable:
    """The shipped table (*path* None) or an operator's; PriceError names the file's problem."""
    file = Path(path) if path is not None else SHIPPED_PRICES
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PriceError(f"{file}: no such file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise PriceError(f"{file}: cannot read it ({error.__class__.__name__})") from None
    except json.JSONDecodeError as error:
        raise PriceError(f"{file}: not JSON (line {error.lineno}: {error.msg})") from None
    try:
        return price_table(data)
    except PriceError as problem:
        raise PriceError(f"{file}: {problem}") from None


@functools.cache
def shipped_prices() -> PriceTable:
    """The table shipped with the plugin (read once)."""
    return read_prices(None)


# -- prices the bot reads itself (PRICES=api) --------------------------------------------------

PRICES_VERSION = 1
PRICES_REFRESH = timedelta(days=1)  # the prices of the types seen are read again once a day
PRICES_RETRY = timedelta(hours=1)  # … and an hour after a failed read (never at every tick)

Seen = tuple[str, str]  # (region, instance type)


@dataclass(frozen=True)
class PricesKept:
    """What the bot keeps of AWS's prices (``PRICES=api``), in the plugin's storage under ``prices``."""

    table: PriceTable | None = None  # every price read so far, each with the day it was read
    read_at: datetime | None = None  # the last read that worked
    tried_at: datetime | None = None  # the last attempt
    failure: str | None = None  # why the last attempt failed (announced when the failures began)
    missing: frozenset[Seen] = frozenset()  # what the Price List had no price for, at read_at

    def to_dict(self) -> dict[str, object]:
        return {
            "version": PRICES_VERSION,
            "table": table_data(self.table) if self.table is not None else None,
            "read_at": self.read_at.isoformat() if self.read_at else None,
            "tried_at": self.tried_at.isoformat() if self.tried_at else None,
            "failure": self.failure,
            "missing": sorted([region, instance_type] for region, instance_type in self.missing),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, object] | None) -> PricesKept:
        """Plain data back (None: nothing kept yet); ValueError for a newer format or a bad table."""
        if data is None:
            return cls()
        version = data.get("version")
        if not isinstance(version, int) or version > PRICES_VERSION:
            raise ValueError(f"stored prices have version {version!r}, newer than this plugin's {PRICES_VERSION}")
        raw_table, missing = data.get("table"), data.get("missing") or []
        assert isinstance(missing, list)
        return cls(
            table=price_table(raw_table) if raw_table is not None else None,
            read_at=_moment(data.get("read_at")),
            tried_at=_moment(data.get("tried_at")),
            failure=str(data["failure"]) if data.get("failure") is not None else None,
            missing=frozenset((str(region), str(instance_type)) for region, instance_type in missing),
        )


def _moment(raw: object) -> datetime | None:
    return datetime.fromisoformat(raw) if isinstance(raw, str) else None


def prices_due(kept: PricesKept, seen: Iterable[Seen], now: datetime) -> bool:
    """Whether to read AWS's prices now: once a day, at once for a type seen for the first time, an hour after a failure."""
    seen = set(seen)
    if not seen:
        return False
    if kept.failure is not None and kept.tried_at is not None and now - kept.tried_at < PRICES_RETRY:
        return False
    if kept.read_at is None or now - kept.read_at >= PRICES_REFRESH:
        return True
    known = {(region, t) for region, types in (kept.table.regions if kept.table else {}).items() for t in types}
    return bool(seen - known - kept.missing)


def prices_read(kept: PricesKept, read: PricesRead, now: datetime) -> PricesKept:
    """*kept* with what was just *read*: its prices replace the ones read before, the others stay."""
    regions: dict[str, dict[str, Price]] = {
        r: dict(types) for r, types in (kept.table.regions if kept.table else {}).items()
    }
    for region, types in read.prices.items():
        regions.setdefault(region, {}).update(types)
    regions = {region: types for region, types in regions.items() if types}
    table = PriceTable(read.source, read.day, regions) if regions else None
    missing = frozenset((m.region, m.instance_type) for m in read.missing)
    return PricesKept(table=table, read_at=now, tried_at=now, failure=None, missing=missing)


def prices_failed(kept: PricesKept, why: str, now: datetime) -> PricesKept:
    """*kept* after a failed read: the last prices stay."""
    return PricesKept(kept.table, kept.read_at, now, why, kept.missing)


def overlay(base: PriceTable, kept: PricesKept) -> PriceTable:
    """*base* (the shipped table or PRICES_FILE) with the prices read from AWS laid over it."""
    if kept.table is None:
        return base
    regions = {region: dict(types) for region, types in base.regions.items()}
    for region, types in kept.table.regions.items():
        regions.setdefault(region, {}).update(types)
    source = f"{kept.table.source}; the rest: {base.source} of {base.date.isoformat()}"
    return PriceTable(source, kept.table.date, regions)


# -- arithmetic ----------------------------------------------------------------------------


def hourly(prices: PriceTable, region: str, composition: Composition) -> Cost | NoPrice:
    """Dollars per hour of a composition; the first type without a price makes it unknown."""
    total = ZERO
    for group in composition:
        if group.count <= 0:
            continue
        price = prices.price(region, group.instance_type)
        if price is None:
            return NoPrice(group.instance_type, region)
        total = total + Cost(group.count * price.per_hour, upper_bound=group.spot, estimated=price.estimated)
    return total


Segments = Sequence[tuple[datetime, Composition]]


def cost_between(prices: PriceTable, region: str, segments: Segments, start: datetime, end: datetime) -> Cost | NoPrice:
    """The cost of running from *start* to *end*, each composition segment at its own rate.

    *segments* are ``(since, composition)`` in time order; the first one counts from
    *start* even if read later (a cluster is read when first seen, priced from its creation).
    """
    rates: list[Cost] = []
    for _, composition in segments:  # an unknown price is said even for no time at all
        rate = hourly(prices, region, composition)
        if isinstance(rate, NoPrice):
            return rate
        rates.append(rate)
    if not segments:
        return ZERO
    if end <= start:  # nothing yet, at the prices of the composition then (an estimate is said from the start)
        then = max((i for i, (since, _) in enumerate(segments) if since <= start), default=0)
        return Cost(0.0, rates[then].upper_bound, rates[then].estimated)
    total = ZERO
    for index, (since, _) in enumerate(segments):
        seg_start = start if index == 0 else max(start, since)
        seg_end = end if index + 1 == len(segments) else min(end, segments[index + 1][0])
        if seg_end <= seg_start:
            continue
        rate = rates[index]
        total = total + Cost(rate.dollars * ((seg_end - seg_start) / HOUR), rate.upper_bound, rate.estimated)
    return total


def summary(composition: Composition) -> str:
    """``3 × m5.xlarge`` (counts of one type added up; spot ones named), largest first."""
    counts: dict[tuple[str, bool], int] = {}
    for group in composition:
        if group.count > 0:
            key = (group.instance_type, group.spot)
            counts[key] = counts.get(key, 0) + group.count
    parts = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return " + ".join(f"{n} × {t}{' spot' if spot else ''}" for (t, spot), n in parts) or "no instances"


# -- intervals -----------------------------------------------------------------------------

Span = tuple[datetime, datetime]


def merge(spans: Iterable[Span]) -> list[Span]:
    """Sorted, non-overlapping, non-empty spans covering the same time."""
    out: list[Span] = []
    for start, end in sorted(s for s in spans if s[1] > s[0]):
        if out and start <= out[-1][1]:
            if end > out[-1][1]:
                out[-1] = (out[-1][0], end)
        else:
            out.append((start, end))
    return out


def intersect(a: Sequence[Span], b: Sequence[Span]) -> list[Span]:
    """Time in both (each argument merged)."""
    out: list[Span] = []
    i = j = 0
    while i < len(a) and j < len(b):
        start, end = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if start < end:
            out.append((start, end))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return out


def subtract(a: Sequence[Span], b: Sequence[Span]) -> list[Span]:
    """Time in *a* and not in *b* (each argument merged)."""
    out: list[Span] = []
    j = 0
    for start, end in a:
        cursor = start
        while j < len(b) and b[j][1] <= cursor:
            j += 1
        k = j
        while k < len(b) and b[k][0] < end:
            if b[k][0] > cursor:
                out.append((cursor, b[k][0]))
            cursor = max(cursor, b[k][1])
            k += 1
        if cursor < end:
            out.append((cursor, end))
    return out


def length(spans: Iterable[Span]) -> timedelta:
    return sum((end - start for start, end in spans), timedelta())
