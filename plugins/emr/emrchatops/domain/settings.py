"""The plugin's settings: the ``EMR`` dict of the bot config, validated.

Values may come typed (from a hand-written ``config.py``) or as strings (from
``EMR_<KEY>`` environment variables, see the project's ``config.py``). A bad
value raises :class:`~emrchatops.domain.errors.ConfigError` naming the key; nothing is
silently replaced by a default.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import time
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from emrchatops.domain.costs import PRICE_LIST_ENDPOINTS, PriceError, PriceTable, read_prices, shipped_prices
from emrchatops.domain.errors import ConfigError
from emrchatops.domain.templates import Template, TemplateError, load_templates
from emrchatops.domain.vocabulary import REGION_RE

if TYPE_CHECKING:
    from emrchatops.domain.targets import Target

ROLE_ARN_RE = re.compile(r"^arn:aws(?:-[a-z]+)*:iam::(\d{12}):role/[\w+=,.@/-]{1,512}$")
TAG_KEY_RE = re.compile(r"^[\w .:/=+@-]{1,128}$")
HHMM_RE = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")
EXTERNAL_ID_RE = re.compile(r"^[\w+=,.@:/-]{2,1224}$")
OFF_WORDS = frozenset({"", "none", "off", "no", "false", "disabled"})

KEYS = (
    "ROLE_ARN",
    "EXTERNAL_ID",
    "REGION",
    "ENDPOINT_URL",
    "CLUSTER_TAG",
    "IDLE_MINUTES",
    "END_OF_DAY",
    "TIMEZONE",
    "WARN_MINUTES",
    "NOTIFY_CHANNEL",
    "POLL_SECONDS",
    "SESSION_SECONDS",
    "ACTIVITY",
    "HOLD_REMIND_MINUTES",
    "HOLD_GRACE_MINUTES",
    "TEMPLATES_DIR",
    "MAX_CLUSTERS",
    "BACKSTOP_MINUTES",
    "PRICES_FILE",
    "LEASE_SECONDS",
    "PRICES",
    "TARGETS_FILE",
    "TARGET_NAME",
    "MAX_PARALLEL",
)
# What a target says in TARGETS_FILE: beside a file, each is refused by name (DESIGN §17).
TARGET_KEYS = ("ROLE_ARN", "EXTERNAL_ID", "REGION", "CLUSTER_TAG", "NOTIFY_CHANNEL", "TEMPLATES_DIR", "TARGET_NAME")
ACTIVITY_SOURCES = ("cloudwatch", "off")
BACKSTOP_DEFAULT = 180


@dataclass(frozen=True)
class TagSelector:
    """Which clusters are managed: ``key=value``, ``key`` (any value) or ``*`` (all, dangerous)."""

    key: str | None
    value: str | None

    @property
    def matches_all(self) -> bool:
        return self.key is None

    def matches(self, tags: Mapping[str, str]) -> bool:
        if self.key is None:
            return True
        if self.key not in tags:
            return False
        return self.value is None or tags[self.key] == self.value

    def __str__(self) -> str:
        if self.key is None:
            return "*"
        return self.key if self.value is None else f"{self.key}={self.value}"


@dataclass(frozen=True)
class Settings:
    """Validated plugin settings (DESIGN §8)."""

    role_arn: str
    external_id: str | None = None
    region: str = "ap-northeast-1"
    endpoint_url: str | None = None
    cluster_tag: TagSelector = TagSelector("emr-chatops", "true")
    idle_minutes: int = 30
    end_of_day: time | None = time(19, 0)
    timezone: ZoneInfo = ZoneInfo("Asia/Tokyo")  # noqa: RUF009 - ZoneInfo objects are immutable and cached
    warn_minutes: int = 5
    notify_channel: str | None = None
    poll_seconds: float = 30.0
    session_seconds: int = 3600
    activity: str = "cloudwatch"  # or "off": the idle rule sees the cluster state and steps only
    hold_remind_minutes: int | None = 120  # None: holds never expire
    hold_grace_minutes: int = 15
    templates_dir: str | None = None  # None: `!emr start` is off
    templates: tuple[Template, ...] = ()  # read from templates_dir at activation, validated
    max_clusters: int = 2  # `!emr start` refuses when more managed clusters would be active
    lease_seconds: int = 60  # several instances (DynamoDB): the poller's lease, renewed at each tick
    backstop_minutes: int | None = BACKSTOP_DEFAULT  # EMR's AutoTerminationPolicy on unheld clusters; None: off
    prices_file: str | None = None  # None: the table shipped in the plugin (prices.json)
    prices: PriceTable = field(default_factory=shipped_prices)  # read at activation, validated
    prices_api: str | None = None  # PRICES=api: the Price List endpoint the bot reads daily; None: the table alone
    targets_file: str | None = None  # None: the keys above make the one target TARGET_NAME (DESIGN §17)
    target_name: str = "main"
    max_parallel: int = 8  # (target, region) pairs the poller lists at once
    # Read from targets_file at activation, validated. With a file, role_arn … templates above are its first
    # target's, for what reads them until every reader goes through `targets`.
    file_targets: tuple[Target, ...] = ()

    @property
    def targets(self) -> tuple[Target, ...]:
        """Every target: TARGETS_FILE's, or the one the part-one keys make."""
        if self.file_targets:
            return self.file_targets
        from emrchatops.domain.targets import single_target  # targets.py builds on this module

        return (single_target(self),)

    @property
    def backstop_seconds(self) -> int | None:
        """EMR's ``IdleTimeout`` for an unheld managed cluster, or None (the bot leaves the policy alone)."""
        return None if self.backstop_minutes is None else self.backstop_minutes * 60

    @property
    def account_id(self) -> str:
        """The cluster account (account B), read off the role ARN."""
        match = ROLE_ARN_RE.match(self.role_arn)
        assert match is not None  # validated in from_mapping
        return match.group(1)


def _text(key: str, raw: object) -> str:
    if not isinstance(raw, str):
        raise ConfigError(key, f"expected text, got {type(raw).__name__}")
    return raw.strip()


def _optional_text(raw: object) -> bool:
    return raw is None or (isinstance(raw, str) and raw.strip().lower() in OFF_WORDS)


def _number(key: str, raw: object, *, minimum: float, maximum: float, integer: bool) -> float:
    if isinstance(raw, bool):
        raise ConfigError(key, "expected a number, got a boolean")
    if isinstance(raw, int | float):
        value = float(raw)
    else:
        text = _text(key, raw)
        try:
            value = float(text)
        except ValueError:
            raise ConfigError(key, f"{text!r} is not a number") from None
    if integer and value != int(value):
        raise ConfigError(key, f"{raw!r} must be a whole number")
    if not minimum <= value <= maximum:
        raise ConfigError(key, f"{raw!r} is out of range ({minimum:g}–{maximum:g})")
    return value


def parse_hhmm(key: str, raw: object) -> time:
    """``'19:00'`` → ``time(19, 0)``; anything else is a :class:`ConfigError` naming *key*."""
    if isinstance(raw, time):
        return raw.replace(second=0, microsecond=0, tzinfo=None)
    text = _text(key, raw)
    match = HHMM_RE.match(text)
    if not match:
        raise ConfigError(key, f"{text!r} is not a time of day as HH:MM (00:00–23:59)")
    return time(int(match.group(1)), int(match.group(2)))


def parse_tag(raw: object) -> TagSelector:
    text = _text("CLUSTER_TAG", raw)
    if text == "*":
        return TagSelector(None, None)
    key, sep, value = text.partition("=")
    key = key.strip()
    if not key or not TAG_KEY_RE.match(key):
        raise ConfigError("CLUSTER_TAG", f"{text!r} is not key=value, key, or *")
    return TagSelector(key, value.strip() if sep else None)


def parse_prices(raw: object) -> str | None:
    """``PRICES``: ``file`` (default: the table alone), ``api`` or ``api:ENDPOINT`` (the Price List's endpoint)."""
    if raw is None:
        return None
    text = _text("PRICES", raw).lower()
    if text in OFF_WORDS or text == "file":
        return None
    kind, _, endpoint = text.partition(":")
    if kind == "api" and (endpoint or PRICE_LIST_ENDPOINTS[0]) in PRICE_LIST_ENDPOINTS:
        return endpoint or PRICE_LIST_ENDPOINTS[0]
    raise ConfigError(
        "PRICES",
        f"{text!r} is not file, api, or api:ENDPOINT with ENDPOINT one of {', '.join(PRICE_LIST_ENDPOINTS)} "
        "(where AWS's Price List answers)",
    )


def from_mapping(raw: Mapping[str, Any]) -> Settings:
    """Validate the ``EMR`` config dict into :class:`Settings`.

    Raises :class:`ConfigError` for the first bad or unknown key.
    """
    unknown = sorted(set(raw) - set(KEYS))
    if unknown:
        raise ConfigError(unknown[0], f"unknown key (known: {', '.join(KEYS)})")

    from emrchatops.domain.targets import load_targets, name_problem  # targets.py builds on this module

    targets_file: str | None = None
    file_targets: tuple[Target, ...] = ()
    if not _optional_text(raw.get("TARGETS_FILE")):
        targets_file = _text("TARGETS_FILE", raw["TARGETS_FILE"])
        beside = [key for key in TARGET_KEYS if raw.get(key) not in (None, "")]
        if beside:
            raise ConfigError(
                beside[0],
                f"set beside TARGETS_FILE ({targets_file}), which says each target's role, external id, regions, "
                "tag, channel and templates: remove one of them",
            )
        file_targets = load_targets(targets_file)
    first = file_targets[0] if file_targets else None

    target_name = _text("TARGET_NAME", raw.get("TARGET_NAME", Settings.target_name))
    problem = name_problem(target_name)
    if problem is not None:
        raise ConfigError("TARGET_NAME", problem)

    if first is not None:
        role_arn = first.role_arn
    elif raw.get("ROLE_ARN") in (None, ""):
        raise ConfigError("ROLE_ARN", "required: the ARN of the role in the cluster account (or TARGETS_FILE)")
    else:
        role_arn = _text("ROLE_ARN", raw["ROLE_ARN"])
        if not ROLE_ARN_RE.match(role_arn):
            raise ConfigError("ROLE_ARN", f"{role_arn!r} is not an IAM role ARN (arn:aws:iam::<12 digits>:role/NAME)")

    external_id: str | None = first.external_id if first is not None else None
    if not _optional_text(raw.get("EXTERNAL_ID")):
        external_id = _text("EXTERNAL_ID", raw["EXTERNAL_ID"])
        if not EXTERNAL_ID_RE.match(external_id):
            raise ConfigError("EXTERNAL_ID", "must be 2–1224 characters of letters, digits and +=,.@:/-")

    region = _text("REGION", raw.get("REGION", first.regions[0] if first is not None else Settings.region))
    if not REGION_RE.match(region):
        raise ConfigError("REGION", f"{region!r} is not an AWS region name such as ap-northeast-1")

    endpoint_url: str | None = None
    if not _optional_text(raw.get("ENDPOINT_URL")):
        endpoint_url = _text("ENDPOINT_URL", raw["ENDPOINT_URL"])
        if not re.match(r"^https?://[^\s/]+(?:/\S*)?$", endpoint_url):
            raise ConfigError("ENDPOINT_URL", f"{endpoint_url!r} is not an http(s) URL")

    cluster_tag = (
        first.cluster_tag if first is not None else parse_tag(raw.get("CLUSTER_TAG", str(Settings.cluster_tag)))
    )

    idle_minutes = int(
        _number("IDLE_MINUTES", raw.get("IDLE_MINUTES", Settings.idle_minutes), minimum=1, maximum=1440, integer=True)
    )
    warn_minutes = int(
        _number("WARN_MINUTES", raw.get("WARN_MINUTES", Settings.warn_minutes), minimum=0, maximum=120, integer=True)
    )
    if warn_minutes >= idle_minutes:
        raise ConfigError("WARN_MINUTES", f"{warn_minutes} must be less than IDLE_MINUTES ({idle_minutes})")

    end_of_day: time | None = None
    raw_end = raw.get("END_OF_DAY", Settings.end_of_day)
    if not _optional_text(raw_end):
        end_of_day = parse_hhmm("END_OF_DAY", raw_end)

    zone_name = _text("TIMEZONE", raw.get("TIMEZONE", Settings.timezone.key))
    try:
        timezone = ZoneInfo(zone_name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError("TIMEZONE", f"{zone_name!r} is not an IANA time zone such as Asia/Tokyo") from None

    notify_channel: str | None = first.notify if first is not None else None
    if not _optional_text(raw.get("NOTIFY_CHANNEL")):
        notify_channel = _text("NOTIFY_CHANNEL", raw["NOTIFY_CHANNEL"])

    poll_seconds = _number(
        "POLL_SECONDS", raw.get("POLL_SECONDS", Settings.poll_seconds), minimum=0.05, maximum=3600, integer=False
    )
    # Below 900 s, botocore's 15-minute refresh window would renew the token on every call.
    session_seconds = int(
        _number(
            "SESSION_SECONDS",
            raw.get("SESSION_SECONDS", Settings.session_seconds),
            minimum=1800,
            maximum=43200,
            integer=True,
        )
    )
    activity = _text("ACTIVITY", raw.get("ACTIVITY", Settings.activity)).lower()
    if activity in OFF_WORDS:
        activity = "off"
    if activity not in ACTIVITY_SOURCES:
        raise ConfigError("ACTIVITY", f"{activity!r} is not one of {', '.join(ACTIVITY_SOURCES)}")
    hold_remind_minutes: int | None = None
    raw_remind = raw.get("HOLD_REMIND_MINUTES", Settings.hold_remind_minutes)
    if not _optional_text(raw_remind):
        hold_remind_minutes = int(_number("HOLD_REMIND_MINUTES", raw_remind, minimum=10, maximum=24 * 60, integer=True))
    hold_grace_minutes = int(
        _number(
            "HOLD_GRACE_MINUTES",
            raw.get("HOLD_GRACE_MINUTES", Settings.hold_grace_minutes),
            minimum=1,
            maximum=240,
            integer=True,
        )
    )
    templates_dir: str | None = first.templates_dir if first is not None else None
    templates: tuple[Template, ...] = first.templates if first is not None else ()
    if not _optional_text(raw.get("TEMPLATES_DIR")):
        templates_dir = _text("TEMPLATES_DIR", raw["TEMPLATES_DIR"])
        try:
            # The key of CLUSTER_TAG is the bot's to set on a started cluster, as are emr-chatops:….
            templates = load_templates(templates_dir, reserved_tags=[cluster_tag.key] if cluster_tag.key else [])
        except TemplateError as problem:
            raise ConfigError("TEMPLATES_DIR", str(problem)) from None
    max_clusters = int(
        _number("MAX_CLUSTERS", raw.get("MAX_CLUSTERS", Settings.max_clusters), minimum=1, maximum=50, integer=True)
    )
    backstop_minutes: int | None = None
    # Unset, it is 180 minutes, or an hour past a longer IDLE_MINUTES: the backstop must come after the idle rule.
    raw_backstop = raw.get("BACKSTOP_MINUTES", max(BACKSTOP_DEFAULT, idle_minutes + 60))
    if not _optional_text(raw_backstop):
        # EMR's IdleTimeout runs from 60 s to 7 days.
        backstop_minutes = int(_number("BACKSTOP_MINUTES", raw_backstop, minimum=1, maximum=7 * 24 * 60, integer=True))
        if backstop_minutes <= idle_minutes:
            raise ConfigError(
                "BACKSTOP_MINUTES",
                f"{backstop_minutes} must be longer than IDLE_MINUTES ({idle_minutes}): EMR's own timeout "
                "is the backstop for when the bot is down, and must never fire before the bot's idle rule",
            )
    # Unset, it is 60 seconds, or two ticks when a tick is longer: the lease must outlive the pause between ticks.
    raw_lease = raw.get("LEASE_SECONDS", max(Settings.lease_seconds, math.ceil(2 * poll_seconds)))
    lease_seconds = int(_number("LEASE_SECONDS", raw_lease, minimum=5, maximum=86_400, integer=True))
    if lease_seconds <= poll_seconds:
        raise ConfigError(
            "LEASE_SECONDS",
            f"{lease_seconds} must be longer than POLL_SECONDS ({poll_seconds:g}): the poller renews its lease "
            "at each tick, and a lease shorter than a tick would pass to another instance between two ticks",
        )
    prices_file: str | None = None
    prices = shipped_prices()
    if not _optional_text(raw.get("PRICES_FILE")):
        prices_file = _text("PRICES_FILE", raw["PRICES_FILE"])
        try:
            prices = read_prices(prices_file)
        except PriceError as problem:
            raise ConfigError("PRICES_FILE", str(problem)) from None
    prices_api = parse_prices(raw.get("PRICES"))
    max_parallel = int(
        _number("MAX_PARALLEL", raw.get("MAX_PARALLEL", Settings.max_parallel), minimum=1, maximum=64, integer=True)
    )
    return Settings(
        role_arn=role_arn,
        external_id=external_id,
        region=region,
        endpoint_url=endpoint_url,
        cluster_tag=cluster_tag,
        idle_minutes=idle_minutes,
        end_of_day=end_of_day,
        timezone=timezone,
        warn_minutes=warn_minutes,
        notify_channel=notify_channel,
        poll_seconds=poll_seconds,
        session_seconds=session_seconds,
        activity=activity,
        hold_remind_minutes=hold_remind_minutes,
        hold_grace_minutes=hold_grace_minutes,
        templates_dir=templates_dir,
        templates=templates,
        max_clusters=max_clusters,
        lease_seconds=lease_seconds,
        backstop_minutes=backstop_minutes,
        prices_file=prices_file,
        prices=prices,
        prices_api=prices_api,
        targets_file=targets_file,
        target_name=target_name,
        max_parallel=max_parallel,
        file_targets=file_targets,
    )


# The tag the shipped policy names unless told otherwise (account-b.yaml's ClusterTagKey and
# ClusterTagValue): the default CLUSTER_TAG.
SHIPPED_POLICY_TAG = TagSelector("emr-chatops", "true")


def policy_tag(selector: TagSelector) -> TagSelector:
    """The tag the role's policy lets the bot change clusters by: CLUSTER_TAG, as the deploy guide has
    the policy name it, or the shipped policy's tag when CLUSTER_TAG is ``*`` (which the policy cannot follow)."""
    return SHIPPED_POLICY_TAG if selector.matches_all else selector
