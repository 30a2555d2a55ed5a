"""Targets (DESIGN §17): an AWS account reached through one role, in one or more regions.

``TARGETS_FILE`` is TOML (the standard library's ``tomllib``)::

    [defaults]                      # any target key but name; each target may override it
    role = "cre"                    # a role name in the target's account, or a full role ARN
    external_id = "…"               # optional ("off" or "": none)
    regions = ["ap-northeast-1"]
    cluster_tag = "emr-chatops=true"
    notify = "#emr-alerts"          # optional ("off" or "": none)

    [[targets]]
    name = "game-a"                 # [a-z0-9-]{1,32}, unique: how people write it
    account = "210987654321"        # 12 digits, in quotes
    regions = ["ap-northeast-1", "us-west-2"]
    notify = "#game-a"
    admins = ["alice"]              # optional: may --force and unlock --user here, besides BOT_ADMINS
    templates_dir = "templates/game-a"   # optional, relative to the file: what !emr start may start here

Everything is checked when the plugin activates; the first problem stops it with a
:class:`TargetsError` (a :class:`ConfigError` of the key ``TARGETS_FILE``) naming the file, the
target (or ``[defaults]``) and the key: "EMR config TARGETS_FILE: targets.toml, target game-a,
key account: expected 12 digits, got '12ab'". Without a file, :func:`single_target` makes the one
target of the part-one keys.

Standard library only; nothing here reads the clock.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from emrchatops.domain.errors import ConfigError
from emrchatops.domain.settings import (
    EXTERNAL_ID_RE,
    OFF_WORDS,
    ROLE_ARN_RE,
    Settings,
    TagSelector,
    parse_tag,
)
from emrchatops.domain.templates import Template, TemplateError, load_templates
from emrchatops.domain.vocabulary import REGION_RE

NAME_RE = re.compile(r"^[a-z0-9-]{1,32}$")
ACCOUNT_RE = re.compile(r"^\d{12}$")
ROLE_NAME_RE = re.compile(r"^[\w+=,.@-]{1,64}$")  # IAM's role names (a path needs the full ARN)
LOOKS_LIKE_A_CLUSTER_ID = re.compile(r"^j-[a-z0-9]{8,}$")  # decisions.CLUSTER_ID_RE, as a name could be written

TARGET_KEYS = ("name", "account", "role", "external_id", "regions", "cluster_tag", "notify", "admins", "templates_dir")
DEFAULT_KEYS = tuple(k for k in TARGET_KEYS if k != "name")
FILE_KEYS = ("defaults", "targets")
REQUIRED = ("account", "role", "regions")
DEFAULTS = "[defaults]"


@dataclass(frozen=True)
class Target:
    """One account reached through one role, in one or more regions, with its own channel and admins."""

    name: str  # how people write it: game-a/analytics
    account: str  # 12 digits
    role_arn: str  # in *account*
    external_id: str | None
    regions: tuple[str, ...]  # at least one, each once
    cluster_tag: TagSelector = Settings.cluster_tag
    notify: str | None = None  # the channel of this target's warnings and notices
    admins: tuple[str, ...] = ()  # may --force and unlock --user on this target's clusters, besides BOT_ADMINS
    templates_dir: str | None = None
    templates: tuple[Template, ...] = ()  # read from templates_dir, validated

    @property
    def session_key(self) -> tuple[str, str | None]:
        """What one STS session is for: targets (and regions) with the same key share it."""
        return self.role_arn, self.external_id


class TargetsError(ConfigError):
    """A bad ``TARGETS_FILE``: names the file, the target (its name, ``#N`` or ``[defaults]``) and the key."""

    def __init__(self, file: str, problem: str, *, target: str | None = None, target_key: str | None = None) -> None:
        self.file = file
        self.target = target
        self.target_key = target_key
        where = [file]
        if target is not None:
            where.append(target if target == DEFAULTS else f"target {target}")
        if target_key is not None:
            where.append(f"key {target_key}")
        super().__init__("TARGETS_FILE", f"{', '.join(where)}: {problem}")


def name_problem(name: str) -> str | None:
    """Why *name* cannot name a target (None: it can). Also TARGET_NAME's rule."""
    if not NAME_RE.match(name):
        return f"{name!r} is not [a-z0-9-]{{1,32}} (lower-case letters, digits and -)"
    if name.startswith("-"):
        return f"{name!r} must begin with a letter or digit (it would read as an option)"
    if name.isdigit():
        return f"{name!r} is digits only: it would read as DAYS in !emr report"
    if LOOKS_LIKE_A_CLUSTER_ID.match(name):
        return f"{name!r} would read as a cluster id"
    return None


def _off(value: str) -> bool:
    return value.strip().lower() in OFF_WORDS


class _Reader:
    """Reads one file; *fail* raises naming the file, the target and the key."""

    def __init__(self, file: str, folder: Path) -> None:
        self.file = file
        self.folder = folder

    def fail(self, target: str | None, key: str | None, problem: str) -> TargetsError:
        return TargetsError(self.file, problem, target=target, target_key=key)

    # -- one value each; *where* is the target's label or [defaults] -----------------------------
    def text(self, where: str, key: str, raw: object) -> str:
        if not isinstance(raw, str):
            raise self.fail(where, key, f"expected text, got {type(raw).__name__}")
        return raw.strip()

    def texts(self, where: str, key: str, raw: object) -> list[str]:
        if not isinstance(raw, list):
            raise self.fail(where, key, f'expected a list of text such as ["x"], got {type(raw).__name__}')
        return [self.text(where, key, item) for item in raw]

    def regions(self, where: str, raw: object) -> tuple[str, ...]:
        if not isinstance(raw, list):
            raise self.fail(where, "regions", f'expected a list such as ["ap-northeast-1"], got {type(raw).__name__}')
        found: list[str] = []
        for region in self.texts(where, "regions", raw):
            if not REGION_RE.match(region):
                raise self.fail(where, "regions", f"{region!r} is not an AWS region name such as ap-northeast-1")
            if region in found:
                raise self.fail(where, "regions", f"{region!r} twice")
            found.append(region)
        if not found:
            raise self.fail(where, "regions", "at least one region")
        return tuple(found)

    def external_id(self, where: str, raw: object) -> str | None:
        value = self.text(where, "external_id", raw)
        if _off(value):
            return None
        if not EXTERNAL_ID_RE.match(value):
            raise self.fail(where, "external_id", "must be 2–1224 characters of letters, digits and +=,.@:/-")
        return value

    def cluster_tag(self, where: str, raw: object) -> TagSelector:
        try:
            return parse_tag(self.text(where, "cluster_tag", raw))
        except ConfigError as problem:
            raise self.fail(where, "cluster_tag", str(problem).removeprefix(f"EMR config {problem.key}: ")) from None

    def notify(self, where: str, raw: object) -> str | None:
        value = self.text(where, "notify", raw)
        return None if _off(value) else value

    def admins(self, where: str, raw: object) -> tuple[str, ...]:
        names = self.texts(where, "admins", raw)
        if "" in names:
            raise self.fail(where, "admins", "an empty name")
        return tuple(dict.fromkeys(names))

    def account(self, where: str, raw: object) -> str:
        if isinstance(raw, int) and not isinstance(raw, bool):
            raise self.fail(where, "account", f"expected 12 digits in quotes (an id may begin with 0), got {raw}")
        value = self.text(where, "account", raw)
        if not ACCOUNT_RE.match(value):
            raise self.fail(where, "account", f"expected 12 digits, got {value!r}")
        return value

    def role(self, where: str, raw: object) -> str:
        """A role name or a role ARN, as written (the account is checked per target)."""
        value = self.text(where, "role", raw)
        if value.startswith("arn:"):
            if not ROLE_ARN_RE.match(value):
                raise self.fail(where, "role", f"{value!r} is not a role ARN (arn:aws:iam::<12 digits>:role/NAME)")
        elif not ROLE_NAME_RE.match(value):
            raise self.fail(
                where, "role", f"{value!r} is neither a role name (1–64 of letters, digits, +=,.@_-) nor a role ARN"
            )
        return value

    def folder_text(self, where: str, raw: object) -> str:
        return self.text(where, "templates_dir", raw)

    def check(self, where: str, key: str, raw: object) -> None:
        """Every key that can be checked alone (the role's account, the templates need the target)."""
        checks = {
            "account": self.account,
            "role": self.role,
            "external_id": self.external_id,
            "regions": self.regions,
            "cluster_tag": self.cluster_tag,
            "notify": self.notify,
            "admins": self.admins,
            "templates_dir": self.folder_text,
        }
        checks[key](where, raw)

    # -- tables ---------------------------------------------------------------------------------
    def table(self, where: str, raw: object, known: Sequence[str], key: str) -> Mapping[str, Any]:
        if not isinstance(raw, dict):
            raise self.fail(None, key, f"expected a table, got {type(raw).__name__}")
        for name in raw:
            if name not in known:
                raise self.fail(where, name, f"unknown key (known: {', '.join(known)})")
        return raw

    def target(
        self, number: int, table: Mapping[str, Any], defaults: Mapping[str, Any], names: dict[str, int]
    ) -> Target:
        where = f"#{number}"
        if "name" not in table:
            raise self.fail(where, "name", "required: how people write this target, e.g. game-a")
        name = self.text(where, "name", table["name"])
        problem = name_problem(name)
        if problem is not None:
            raise self.fail(where, "name", problem)
        if name in names:
            raise self.fail(f"{name} (#{number})", "name", f"{name!r} is also target #{names[name]}'s name")
        names[name] = number
        where = name
        self.table(where, table, TARGET_KEYS, "targets")
        merged = {**defaults, **table}
        for key in REQUIRED:
            if key not in merged:
                raise self.fail(where, key, "required (here or in [defaults])")
        for key, raw in table.items():
            if key != "name":
                self.check(where, key, raw)
        account = self.account(where, merged["account"])
        role_arn = self.role(where, merged["role"])
        if role_arn.startswith("arn:"):
            match = ROLE_ARN_RE.match(role_arn)
            assert match is not None  # checked by role()
            if match.group(1) != account:
                inherited = " (from [defaults])" if "role" not in table else ""
                raise self.fail(
                    where,
                    "role",
                    f"{role_arn!r} is in account {match.group(1)}, not the target's account {account}{inherited}",
                )
        else:
            role_arn = f"arn:aws:iam::{account}:role/{role_arn}"
        cluster_tag = (
            self.cluster_tag(where, merged["cluster_tag"]) if "cluster_tag" in merged else Settings.cluster_tag
        )
        templates_dir: str | None = None
        templates: tuple[Template, ...] = ()
        if "templates_dir" in merged and not _off(folder := self.folder_text(where, merged["templates_dir"])):
            templates_dir = str(self.folder / folder)
            try:
                # The key of the target's cluster tag is the bot's to set on a started cluster, as are emr-chatops:….
                templates = load_templates(templates_dir, reserved_tags=[cluster_tag.key] if cluster_tag.key else [])
            except TemplateError as problem:
                raise self.fail(where, "templates_dir", str(problem)) from None
        return Target(
            name=name,
            account=account,
            role_arn=role_arn,
            external_id=self.external_id(where, merged["external_id"]) if "external_id" in merged else None,
            regions=self.regions(where, merged["regions"]),
            cluster_tag=cluster_tag,
            notify=self.notify(where, merged["notify"]) if "notify" in merged else None,
            admins=self.admins(where, merged["admins"]) if "admins" in merged else (),
            templates_dir=templates_dir,
            templates=templates,
        )


def _may_share_a_cluster(a: TagSelector, b: TagSelector) -> bool:
    """Whether one cluster can carry tags both selectors match (only one key with two values tells them apart)."""
    return not (
        a.key is not None and a.key == b.key and a.value is not None and b.value is not None and a.value != b.value
    )


def load_targets(path: str | Path) -> tuple[Target, ...]:
    """The targets of *path*, in the file's order; :class:`TargetsError` for the first problem."""
    file = str(path)
    reader = _Reader(file, Path(path).parent)
    try:
        with open(path, "rb") as stream:
            raw = tomllib.load(stream)
    except OSError as problem:
        raise reader.fail(None, None, f"cannot be read ({problem.strerror or problem})") from None
    except ValueError as problem:  # tomllib.TOMLDecodeError, UnicodeDecodeError
        raise reader.fail(None, None, f"is not TOML ({problem})") from None
    for key in raw:
        if key not in FILE_KEYS:
            raise reader.fail(None, key, f"unknown key (known: {', '.join(FILE_KEYS)})")
    if isinstance(raw.get("defaults"), dict) and "name" in raw["defaults"]:
        raise reader.fail(DEFAULTS, "name", "each target's own: give it in its [[targets]] table")
    defaults = reader.table(DEFAULTS, raw.get("defaults", {}), DEFAULT_KEYS, "defaults")
    for key, value in defaults.items():
        reader.check(DEFAULTS, key, value)
    tables = raw.get("targets")
    if tables is None:
        raise reader.fail(None, "targets", "no [[targets]]: give at least one")
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        raise reader.fail(None, "targets", "expected an array of tables ([[targets]])")
    if not tables:
        raise reader.fail(None, "targets", "no [[targets]]: give at least one")
    names: dict[str, int] = {}
    found: list[Target] = []
    for number, table in enumerate(tables, start=1):
        target = reader.target(number, table, defaults, names)
        for other in found:
            shared = [r for r in target.regions if r in other.regions]
            if (
                other.account == target.account
                and shared
                and _may_share_a_cluster(other.cluster_tag, target.cluster_tag)
            ):
                raise reader.fail(
                    target.name,
                    "regions",
                    f"{shared[0]} of account {target.account} is also target {other.name}'s, and one cluster could "
                    f"be both targets' ({other.cluster_tag} and {target.cluster_tag}): give them other regions, or "
                    "one tag key with a different value each",
                )
        found.append(target)
    return tuple(found)


def single_target(settings: Settings) -> Target:
    """The one target of the part-one keys (ROLE_ARN, EXTERNAL_ID, REGION, CLUSTER_TAG, NOTIFY_CHANNEL,
    TEMPLATES_DIR), named TARGET_NAME: what the bot serves without a TARGETS_FILE."""
    return Target(
        name=settings.target_name,
        account=settings.account_id,
        role_arn=settings.role_arn,
        external_id=settings.external_id,
        regions=(settings.region,),
        cluster_tag=settings.cluster_tag,
        notify=settings.notify_channel,
        admins=(),
        templates_dir=settings.templates_dir,
        templates=settings.templates,
    )
