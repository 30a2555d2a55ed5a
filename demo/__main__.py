"""The local demo: ``python -m demo`` (``make demo``).

Starts moto's server on a free loopback port, seeds account A (the bot) and
account B (role ``cre``, the managed cluster ``analytics`` and the unmanaged
``etl-nightly``), then runs the real ``errbot`` with the Text backend and the
EMR plugin in the foreground: type ``!emr status``. When the console exits,
the emulator stops. No AWS or Slack account is needed; nothing leaves the
machine.

Starting works too: the bot reads the shipped template
``deploy/templates/analytics.json``, so ``!emr terminate`` then ``!emr start``
starts a new ``analytics``; the emulator keeps it ``STARTING`` and then
``BOOTSTRAPPING`` for :data:`STARTING_SECONDS` and :data:`BOOTSTRAPPING_SECONDS`
(EMR takes minutes), so ``!emr status`` shows the start and the ready notice
follows at the next poll.

``python -m demo --targets`` (``make demo-targets``) serves two targets at once (DESIGN §17), as
``demo/targets.toml`` names them: ``game-a`` (account B, as above) and ``game-b`` (account C, an
``analytics`` in ap-northeast-1 and another in us-west-2), so ``!emr lock analytics`` is refused
with the qualified names and ``!emr lock game-b/us-west-2/analytics`` holds one.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from demo.emulator import ACCOUNT_C, BOT_KEYS, EXTERNAL_ID, REGION, ROLE_ARN, Emulator

ROOT = Path(__file__).resolve().parent.parent
DEMO_ZONE = "Asia/Tokyo"
TEMPLATES_DIR = ROOT / "deploy" / "templates"
STARTING_SECONDS = 6.0
BOOTSTRAPPING_SECONDS = 6.0
TARGETS_FILE = ROOT / "demo" / "targets.toml"
WEST = "us-west-2"  # game-b's second region (demo/targets.toml)


def demo_environment(emulator: Emulator, data_dir: str) -> dict[str, str]:
    """The environment the demo bot runs with: emulator endpoint, demo keys, fresh data dir."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "SLACK_", "EMR_"))}
    env.update(
        AWS_ACCESS_KEY_ID=BOT_KEYS["aws_access_key_id"],
        AWS_SECRET_ACCESS_KEY=BOT_KEYS["aws_secret_access_key"],
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
        AWS_EC2_METADATA_DISABLED="true",
        EMR_ROLE_ARN=ROLE_ARN,
        EMR_EXTERNAL_ID=EXTERNAL_ID,
        EMR_REGION=REGION,
        EMR_ENDPOINT_URL=emulator.url,
        EMR_TIMEZONE=DEMO_ZONE,
        EMR_NOTIFY_CHANNEL="#emr-alerts",
        EMR_TEMPLATES_DIR=str(TEMPLATES_DIR),
        EMR_POLL_SECONDS=os.environ.get("EMR_POLL_SECONDS", "10"),
        EMR_CHATOPS_DATA_DIR=data_dir,
        BOT_ADMINS="@admin",
    )
    # Run after 18:30 Tokyo time, the end-of-day pass would terminate the demo
    # cluster at the first tick: switch the rule off then, and say so.
    local = datetime.now(ZoneInfo(DEMO_ZONE))
    end_of_day = os.environ.get("EMR_END_OF_DAY", "19:00" if (local.hour, local.minute) < (18, 30) else "off")
    env["EMR_END_OF_DAY"] = end_of_day
    return env


def targets_environment(emulator: Emulator, data_dir: str) -> dict[str, str]:
    """The demo's environment serving demo/targets.toml's two targets: TARGETS_FILE instead of the
    part-one keys it replaces (each target's role, regions, channel and templates are in the file)."""
    env = demo_environment(emulator, data_dir)
    for key in ("EMR_ROLE_ARN", "EMR_EXTERNAL_ID", "EMR_REGION", "EMR_NOTIFY_CHANNEL", "EMR_TEMPLATES_DIR"):
        del env[key]
    env["EMR_TARGETS_FILE"] = str(TARGETS_FILE)
    return env


def seed_targets(emulator: Emulator) -> str:
    """Account B as the one-target demo has it, and account C with an ``analytics`` in two regions."""
    seeded = emulator.seed()
    emulator.seed_account(ACCOUNT_C, (REGION, WEST))
    east = emulator.run_cluster("analytics", account=ACCOUNT_C, region=REGION)
    west = emulator.run_cluster("analytics", account=ACCOUNT_C, region=WEST)
    return (
        f"game-a (account B): 'analytics' ({seeded.managed_id}, managed), 'etl-nightly' ({seeded.unmanaged_id}, "
        f"not managed); game-b (account C): 'analytics' in {REGION} ({east}) and in {WEST} ({west})."
    )


def two_instances_environment(emulator: Emulator) -> dict[str, str]:
    """The demo's environment for bots that share their state on the emulator's DynamoDB (README, "Two instances").

    Each instance adds its own ``EMR_CHATOPS_DATA_DIR``; the table is created by the first to start."""
    env = demo_environment(emulator, "")
    del env["EMR_CHATOPS_DATA_DIR"]
    env.update(
        EMR_CHATOPS_STORAGE="dynamodb",
        EMR_CHATOPS_DYNAMODB_TABLE="emr-chatops",
        EMR_CHATOPS_DYNAMODB_REGION=REGION,
        EMR_CHATOPS_DYNAMODB_ENDPOINT_URL=emulator.url,
        EMR_CHATOPS_DYNAMODB_CREATE="true",
    )
    return {k: v for k, v in env.items() if k.startswith(("AWS_", "EMR_", "BOT_"))}  # not the rest of os.environ


def serve_two_instances(emulator: Emulator, env_file: Path) -> int:
    """Seed the emulator, write *env_file* for the instances, and serve until Ctrl-C."""
    env = two_instances_environment(emulator)
    env_file.write_text("".join(f"{key}={value}\n" for key, value in sorted(env.items())), encoding="utf-8")
    env_file.chmod(0o600)
    print(
        f"[demo] AWS emulator on {emulator.url}, with DynamoDB. Start each instance in its own terminal:\n"
        f"  (set -a; . {env_file}; EMR_CHATOPS_DATA_DIR=/tmp/emr-bot-1 .venv/bin/errbot -c config.py)\n"
        f"  (set -a; . {env_file}; EMR_CHATOPS_DATA_DIR=/tmp/emr-bot-2 .venv/bin/errbot -c config.py)\n"
        "[demo] Ctrl-C stops the emulator.",
        flush=True,
    )
    with contextlib.suppress(KeyboardInterrupt):
        threading.Event().wait()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keep-data", metavar="DIR", help="bot data dir to reuse (default: a fresh temp dir)")
    parser.add_argument(
        "--starting-seconds", type=float, default=STARTING_SECONDS, help="how long a started cluster is STARTING"
    )
    parser.add_argument("--bootstrapping-seconds", type=float, default=BOOTSTRAPPING_SECONDS, help="then BOOTSTRAPPING")
    parser.add_argument(
        "--two-instances",
        metavar="ENV_FILE",
        help="run only the emulator, and write ENV_FILE for bots that share their state on its DynamoDB",
    )
    parser.add_argument(
        "--targets", action="store_true", help="serve two targets (demo/targets.toml: accounts B and C, two regions)"
    )
    args = parser.parse_args(argv)
    if args.two_instances:
        with Emulator() as emulator:
            emulator.seed()
            emulator.play_starts(args.starting_seconds, args.bootstrapping_seconds)
            return serve_two_instances(emulator, Path(args.two_instances))

    started = time.monotonic()
    with Emulator() as emulator, tempfile.TemporaryDirectory(prefix="emr-chatops-demo-") as tmp:
        if args.targets:
            print(f"[demo] AWS emulator on {emulator.url}: {seed_targets(emulator)}", flush=True)
            env = targets_environment(emulator, args.keep_data or tmp)
        else:
            seeded = emulator.seed()
            env = demo_environment(emulator, args.keep_data or tmp)
            print(
                f"[demo] AWS emulator on {emulator.url}: account B has 'analytics' ({seeded.managed_id}, managed) "
                f"and 'etl-nightly' ({seeded.unmanaged_id}, not managed).",
                flush=True,
            )
        emulator.play_starts(args.starting_seconds, args.bootstrapping_seconds)  # the bot's starts take seconds
        if env["EMR_END_OF_DAY"] == "off":
            print("[demo] It is past 18:30 in Tokyo: the end-of-day rule is off for this demo.", flush=True)
        if args.targets:
            hint = "!emr status, !emr lock analytics (refused: which one?), then !emr lock game-b/us-west-2/analytics"
        else:
            hint = "!emr status, then !emr terminate and !emr start (template deploy/templates/analytics.json)"
        print(f"[demo] Ready in {time.monotonic() - started:.1f} s. Try: {hint}   (Ctrl-D quits)", flush=True)
        errbot = str(Path(sys.executable).with_name("errbot"))
        return subprocess.call([errbot, "-c", str(ROOT / "config.py")], env=env, cwd=ROOT)


if __name__ == "__main__":
    sys.exit(main())
