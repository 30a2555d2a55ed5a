"""The configuration reference: every key the bot reads, its default, meaning and validation.

One entry per key of :data:`emrchatops.domain.settings.KEYS` (the plugin's ``EMR_<KEY>`` variables) and per
process variable ``config.py`` reads. ``python -m emrchatops.domain.reference`` writes ``docs/configuration.md``
from it; ``--check`` fails when that file is stale. ``tests/test_docs.py`` holds the entries to ``KEYS``, to
``config.py`` and to the :class:`~emrchatops.domain.settings.Settings` dataclass defaults.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

#: Words that switch an optional key off (``settings.OFF_WORDS``, written out for the reader).
OFF = "`off` (or `none`, `no`, `false`, `disabled`, empty)"


@dataclass(frozen=True)
class Key:
    """One key: *default* as the table shows it; *field* names the Settings attribute whose dataclass default
    *default* renders, or is None when the default is not a plain field default (required, derived)."""

    name: str
    default: str
    meaning: str
    validation: str
    field: str | None = None


def _plain(name: str, default: str, meaning: str, validation: str) -> Key:
    return Key(name, default, meaning, validation, field=name.lower())


#: The plugin's keys, in the order of ``settings.KEYS``; each is the environment variable ``EMR_<KEY>``.
EMR_KEYS: tuple[Key, ...] = (
    Key(
        "ROLE_ARN",
        "(required)",
        "the role in the cluster account (account B) the bot assumes",
        "an IAM role ARN, `arn:aws:iam::<12 digits>:role/NAME` (other partitions too); required unless "
        "`TARGETS_FILE` is set, refused beside it",
    ),
    _plain(
        "EXTERNAL_ID",
        "none",
        "the STS ExternalId of the AssumeRole",
        f"2–1224 characters of letters, digits and `+=,.@:/-`; {OFF}; refused beside `TARGETS_FILE`",
    ),
    Key(
        "REGION",
        "`ap-northeast-1`",
        "the clusters' region (with `TARGETS_FILE`: its target's first region)",
        "an AWS region name such as `ap-northeast-1`; refused beside `TARGETS_FILE`",
        field="region",
    ),
    _plain(
        "ENDPOINT_URL",
        "none",
        "an AWS endpoint override: the local emulator of the demo and the tests, never production",
        f"an `http://` or `https://` URL; {OFF}",
    ),
    _plain(
        "CLUSTER_TAG",
        "`emr-chatops=true`",
        "which clusters are managed: `key=value`, `key` (any value) or `*` (every cluster of the account and "
        "region: dangerous, IAM then protects nothing); every other cluster is never touched",
        "`key=value`, `key` or `*`; a key of 1–128 letters, digits, spaces and `.:/=+@-`; refused beside "
        "`TARGETS_FILE`",
    ),
    _plain(
        "IDLE_MINUTES",
        "30",
        "the idle rule: an unheld `WAITING` cluster without work is terminated this long after it became idle",
        "a whole number, 1–1440",
    ),
    _plain(
        "END_OF_DAY",
        "`19:00`",
        "the end-of-day rule, local time (`TIMEZONE`): every managed cluster is terminated unless a holder "
        "asked for overtime",
        f"`HH:MM`, 00:00–23:59; {OFF} disables the rule",
    ),
    _plain(
        "TIMEZONE",
        "`Asia/Tokyo`",
        "the zone of the end of day, of the report's days and of times in replies",
        "an IANA time zone name",
    ),
    _plain(
        "WARN_MINUTES",
        "5",
        "how long before an automatic termination the warning goes out",
        "a whole number, 0–120, less than `IDLE_MINUTES`",
    ),
    _plain(
        "NOTIFY_CHANNEL",
        "none",
        "where warnings, automatic terminations and notices are announced (e.g. `#emr-alerts`)",
        f"text; {OFF}; refused beside `TARGETS_FILE`",
    ),
    _plain(
        "POLL_SECONDS",
        "30",
        "the poller's interval",
        "a number, 0.05–3600",
    ),
    _plain(
        "SESSION_SECONDS",
        "3600",
        "the AssumeRole session's duration (an instance profile caps it at one hour)",
        "a whole number, 1800–43200",
    ),
    _plain(
        "ACTIVITY",
        "`cloudwatch`",
        "`cloudwatch`: read EMR's `IsIdle` metric (YARN work) of the managed clusters; `off`: the idle rule "
        "goes by the cluster state and steps alone",
        f"`cloudwatch` or {OFF}",
    ),
    _plain(
        "HOLD_REMIND_MINUTES",
        "120",
        "ask a holder who has not confirmed for that long, on a cluster without work, whether they still use it",
        f"a whole number, 10–1440; {OFF}: holds never expire",
    ),
    _plain(
        "HOLD_GRACE_MINUTES",
        "15",
        "an unconfirmed hold ends that long after its reminder",
        "a whole number, 1–240",
    ),
    _plain(
        "TEMPLATES_DIR",
        "none",
        "a directory of `NAME.json` cluster templates for `!emr start`; none: `!emr start` is off and says how "
        "to enable it",
        "each template is read and checked at activation, a bad one named with its problem; refused beside "
        "`TARGETS_FILE`",
    ),
    _plain(
        "MAX_CLUSTERS",
        "2",
        "`!emr start` refuses when more managed clusters would be active",
        "a whole number, 1–50",
    ),
    Key(
        "BACKSTOP_MINUTES",
        "180",
        "EMR's own `AutoTerminationPolicy` `IdleTimeout` on unheld managed clusters, for when the bot is down; "
        "unset with an `IDLE_MINUTES` past 120, an hour past `IDLE_MINUTES`",
        f"a whole number, 1–10080, longer than `IDLE_MINUTES`; {OFF}: the bot leaves EMR's policy alone",
        field="backstop_minutes",
    ),
    Key(
        "PRICES_FILE",
        "none",
        "a price table of the shipped format to use instead of the shipped "
        "`plugins/emr/emrchatops/domain/prices.json` (`make prices` writes one)",
        f"read and checked at activation, a bad file named with its problem; {OFF}",
        field="prices_file",
    ),
    Key(
        "LEASE_SECONDS",
        "60",
        "with several instances on DynamoDB, the poller's lease, renewed at each tick; unset with a "
        "`POLL_SECONDS` past 30, two ticks",
        "a whole number, 5–86400, longer than `POLL_SECONDS`",
        field="lease_seconds",
    ),
    Key(
        "PRICES",
        "`file`",
        "`file`: the price table alone; `api`: the bot also reads AWS's prices of the instance types it sees "
        "from the Price List API, once a day, over the table; `api:ENDPOINT` for another Price List endpoint "
        "(default `us-east-1`)",
        f"`file`, `api` or `api:ENDPOINT` with ENDPOINT one of `us-east-1`, `eu-central-1`, `ap-south-1`; {OFF} "
        "is `file`",
    ),
    _plain(
        "TARGETS_FILE",
        "none",
        "a TOML file of targets (account, role, regions, tag, channel, admins, templates) instead of the keys "
        "marked *refused beside `TARGETS_FILE`*; this version serves one target in one region: a file naming "
        "more is refused at activation",
        "read and checked at activation, a problem named with the file, the target and the key",
    ),
    _plain(
        "TARGET_NAME",
        "`main`",
        "the name of the one target the keys above make, without `TARGETS_FILE`",
        "`[a-z0-9-]{1,32}`, beginning with a letter or digit, not digits only, not a cluster id; refused "
        "beside `TARGETS_FILE`",
    ),
    _plain(
        "MAX_PARALLEL",
        "8",
        "how many (target, region) pairs the poller would list at once; read and checked, unused while one "
        "target in one region is served",
        "a whole number, 1–64",
    ),
)


@dataclass(frozen=True)
class ProcessKey:
    """A variable ``config.py`` reads for the bot process itself (chat backend, storage, logs)."""

    name: str
    default: str
    meaning: str


PROCESS_KEYS: tuple[ProcessKey, ...] = (
    ProcessKey(
        "SLACK_BOT_TOKEN",
        "none",
        "the Slack app's bot token (`xoxb-…`); with `SLACK_APP_TOKEN`, the backend is Slack (SlackV3, Socket "
        "Mode), otherwise the Text console",
    ),
    ProcessKey("SLACK_APP_TOKEN", "none", "the Slack app-level token (`xapp-…`, scope `connections:write`)"),
    ProcessKey(
        "BOT_ADMINS",
        "none on Slack, `@admin` on the console",
        "comma-separated Slack user ids (`U…`) of the admins: Errbot's admin commands, `--force`, `unlock --user`",
    ),
    ProcessKey("EMR_CHATOPS_DATA_DIR", "`./data`", "Errbot's data directory (the SQLite storage, the log)"),
    ProcessKey("EMR_CHATOPS_LOG_FILE", "`<data dir>/errbot.log`", "Errbot's log file"),
    ProcessKey("EMR_CHATOPS_LOG_LEVEL", "`INFO`", "the log level (`DEBUG`, `INFO`, `WARNING` …)"),
    ProcessKey(
        "EMR_CHATOPS_STORAGE",
        "`SQLite`",
        "the Errbot storage plugin: `sqlite` (one process) or `dynamodb` (several instances on one table); any "
        "other name is passed to Errbot as is",
    ),
    ProcessKey("EMR_CHATOPS_DYNAMODB_TABLE", "`emr-chatops`", "with `dynamodb`: the table"),
    ProcessKey("EMR_CHATOPS_DYNAMODB_REGION", "boto3's", "with `dynamodb`: the table's region"),
    ProcessKey(
        "EMR_CHATOPS_DYNAMODB_ENDPOINT_URL", "none", "with `dynamodb`: a local emulator's endpoint, never production"
    ),
    ProcessKey(
        "EMR_CHATOPS_DYNAMODB_CREATE",
        "`false`",
        "with `dynamodb`: create a missing table (demo, tests); off, a missing table stops the bot at start, "
        "naming `deploy/cloudformation/dynamodb.yaml`; `true`/`false` (`1`, `yes`, `on` / `0`, `no`, `off`)",
    ),
    ProcessKey(
        "EMR_CHATOPS_SLACK_API_URL",
        "none",
        "tests only: send the Slack Web API calls to a local fake (`tests/fakeslack.py`)",
    ),
)

ROOT = Path(__file__).resolve().parents[4]
OUT = ROOT / "docs" / "configuration.md"

HEADER = """\
# Configuration reference

<!-- Generated by `python -m emrchatops.domain.reference` from plugins/emr/emrchatops/domain/reference.py:
     edit that file, then `make docs`. tests/test_docs.py fails when this file is stale. -->

`config.py` builds Errbot's config from environment variables, so that one environment file
(`deploy/emr-chatops.env.example`, installed as `/etc/emr-chatops/env`) is all an operator edits.

## The plugin's keys

Every `EMR_<KEY>` variable fills the plugin's `EMR` dict; the plugin validates it at activation. A bad value
(a malformed ARN, an unknown zone, `25:00`, negative minutes) or an unknown key (a misspelt `EMR_IDEL_MINUTES`)
stops activation with a message naming the key; nothing is silently replaced by a default.

"""

PROCESS_HEADER = """
## The process's variables

Read by `config.py` itself, before the plugin loads (a change needs a restart, not `!plugin reload EMR`).

"""


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def render() -> str:
    """The text of ``docs/configuration.md``."""
    lines = [HEADER.rstrip("\n") + "\n", "| variable | default | meaning | validation |", "|---|---|---|---|"]
    for key in EMR_KEYS:
        cells = (f"`EMR_{key.name}`", key.default, key.meaning, key.validation)
        lines.append("| " + " | ".join(_cell(cell) for cell in cells) + " |")
    lines += [PROCESS_HEADER.rstrip("\n") + "\n", "| variable | default | meaning |", "|---|---|---|"]
    for process_key in PROCESS_KEYS:
        row = (f"`{process_key.name}`", process_key.default, process_key.meaning)
        lines.append("| " + " | ".join(_cell(cell) for cell in row) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m emrchatops.domain.reference", description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail when the file is stale, write nothing")
    parser.add_argument("--out", type=Path, default=OUT, help=f"the file to write (default {OUT})")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = args.out.read_text(encoding="utf-8") if args.out.exists() else ""
        if current != text:
            print(f"{args.out} is stale: run `make docs` and commit it", file=sys.stderr)
            return 1
        print(f"{args.out} is up to date")
        return 0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
