"""Section 1 — STS economy: AssumeRole requests for a burst of commands and across restarts.

Path: the real plugin through Errbot. Commands are pushed into the test
backend's queue all at once; its single consumer hands each one to Errbot's
thread pool (``BOT_ASYNC_POOLSIZE`` = the thread count), so the plugin's
command methods run concurrently on that many threads, exactly as they would
behind Slack. The data dir starts empty (no token), so the first commands of
the burst race for the first AssumeRole. A restart is ``TestBot.stop()`` then
``start()`` on the same data dir and SQLite storage.

Baseline, measured in the same run against the same emulator: a naive bot that
calls ``sts:AssumeRole`` and builds a new EMR client for every command, then
does what the plugin's ``status`` does without a tag cache (ListClusters, then
DescribeCluster per listed cluster), from the same number of threads.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import boto3

from bench.harness import ACTIVE_STATES, ERRORS, Bot, Section, Target, emr_config, table
from demo.emulator import EXTERNAL_ID, REGION, ROLE_ARN, Emulator

COMMANDS = ("!emr status", "!emr lock", "!emr unlock")
UNEXPECTED = "Something unexpected"


def plan(count: int, threads: int) -> list[tuple[str, str]]:
    """*count* commands from *threads* users: each user cycles status → lock → unlock."""
    users = [f"user{i:02d}" for i in range(threads)]
    return [(users[i % threads], COMMANDS[(i // threads) % len(COMMANDS)]) for i in range(count)]


def _actions(emulator: Emulator) -> Counter[str]:
    return Counter({action: n for (_, action), n in emulator.requests.items()})


def _burst(bot: Bot, emulator: Emulator, commands: list[tuple[str, str]]) -> dict[str, Any]:
    emulator.reset_counts()
    bot.reply_threads.clear()
    started = time.perf_counter()
    replies = bot.burst(commands)
    seconds = time.perf_counter() - started
    actions = _actions(emulator)
    return {
        "commands": len(commands),
        "seconds": round(seconds, 3),
        "assume_role": actions["AssumeRole"],
        "requests": dict(actions),
        "worker_threads": len(bot.reply_threads),
        "refused": sum(1 for r in replies if r.startswith("✗") and UNEXPECTED not in r),
        "failed": sum(1 for r in replies if UNEXPECTED in r),
        "plugin_assume_count": bot.plugin.session.assume_count,
    }


def naive(emulator: Emulator, commands: int, threads: int) -> dict[str, Any]:
    """The baseline: AssumeRole + a new EMR client per command, no tag cache."""
    local = threading.local()

    def command(_: int) -> None:
        if not hasattr(local, "sts"):  # boto3 sessions are not thread-safe: one per thread
            local.session = boto3.session.Session()
            local.sts = local.session.client("sts", region_name=REGION, endpoint_url=emulator.url)
        credentials = local.sts.assume_role(RoleArn=ROLE_ARN, RoleSessionName="naive", ExternalId=EXTERNAL_ID)[
            "Credentials"
        ]
        emr = local.session.client(
            "emr",
            region_name=REGION,
            endpoint_url=emulator.url,
            aws_access_key_id=credentials["AccessKeyId"],
            aws_secret_access_key=credentials["SecretAccessKey"],
            aws_session_token=credentials["SessionToken"],
        )
        for cluster in emr.list_clusters(ClusterStates=ACTIVE_STATES)["Clusters"]:
            emr.describe_cluster(ClusterId=cluster["Id"])

    emulator.reset_counts()
    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(command, range(commands)))
    seconds = time.perf_counter() - started
    actions = _actions(emulator)
    return {
        "commands": commands,
        "seconds": round(seconds, 3),
        "assume_role": actions["AssumeRole"],
        "requests": dict(actions),
        "worker_threads": threads,
    }


def run(
    emulator: Emulator, workdir: Path, *, commands: int, threads: int, restarts: int, after_restart: int
) -> Section:
    section = Section("sts", "1. STS economy: AssumeRole requests")
    emulator.reset()
    emulator.seed()
    emulator.reset_counts()

    phases: list[tuple[str, dict[str, Any]]] = []
    errors_before = len(ERRORS.records)
    bot = Bot(workdir / "sts-data", emr_config(emulator), pool_size=threads).start()
    try:
        phases.append((f"burst, empty data dir ({threads} threads)", _burst(bot, emulator, plan(commands, threads))))
        for n in range(1, restarts + 1):
            bot.restart()
            phases.append((f"after restart {n}", _burst(bot, emulator, plan(after_restart, threads))))
    finally:
        bot.stop()
    baseline = naive(emulator, commands, threads)

    total_commands = sum(p["commands"] for _, p in phases)
    total_assume = sum(p["assume_role"] for _, p in phases)
    total_requests = sum(sum(p["requests"].values()) for _, p in phases)

    def row(name: str, p: dict[str, Any]) -> list[object]:
        other = sum(p["requests"].values()) - p["assume_role"]
        rate = p["commands"] / p["seconds"] if p["seconds"] else 0.0
        return [
            name,
            p["commands"],
            p["worker_threads"],
            p["assume_role"],
            other,
            p.get("failed", ""),
            f"{p['seconds']:.1f}",
            f"{rate:.0f}",
        ]

    header = ["phase", "commands", "threads", "AssumeRole", "other AWS requests", "errors", "seconds", "commands/s"]
    rows = [row("plugin via Errbot: " + name, p) for name, p in phases]
    failed = sum(p["failed"] for _, p in phases)
    rows.append(
        ["plugin via Errbot: total", total_commands, "", total_assume, total_requests - total_assume, failed, "", ""]
    )
    rows.append(row("naive: AssumeRole + new client per command", baseline))
    section.say(
        f"{commands} commands (status/lock/unlock cycles of {threads} users) pushed at once into Errbot's test "
        f"backend; Errbot's pool of {threads} workers runs them. Then {restarts} restarts (stop + start on the "
        f"same data dir, SQLite storage), {after_restart} commands after each. Token lifetime 3600 s.",
        "",
        *table(header, rows),
        "",
        "  requests by action — plugin (all phases): "
        + ", ".join(f"{a} {n}" for a, n in sorted(sum((Counter(p["requests"]) for _, p in phases), Counter()).items())),
        "  requests by action — naive baseline:      "
        + ", ".join(f"{a} {n}" for a, n in sorted(baseline["requests"].items())),
        f"  replies: {sum(p['refused'] for _, p in phases)} refusals (e.g. unlock before that user's lock ran: "
        f"the burst is concurrent), {failed} unexpected errors",
        *(f"  logged error: {line}" for line in ERRORS.records[errors_before:][:3]),
    )
    section.data = {"phases": [{"phase": n, **p} for n, p in phases], "naive": baseline}
    describes = sum(p["requests"].get("DescribeCluster", 0) for _, p in phases)
    active = len(emulator.emr_b().list_clusters(ClusterStates=ACTIVE_STATES)["Clusters"])
    ideal = active * (1 + restarts)
    section.say(
        f"  tag lookups: {describes} DescribeCluster for {active} active clusters and {1 + restarts} bot processes "
        f"(once per cluster per process would be {ideal})"
    )
    section.data["describe_cluster"] = {"measured": describes, "once_per_cluster_per_process": ideal}
    section.targets.append(
        Target(
            "STS: AssumeRole for the burst and across restarts",
            "exactly 1",
            f"{total_assume} for {total_commands} commands and {restarts} restarts "
            f"(naive baseline: {baseline['assume_role']} for {baseline['commands']})",
            total_assume == 1 and all(p["failed"] == 0 for _, p in phases),
        )
    )
    section.targets.append(
        Target(
            "tag cache under concurrency (emr_adapter: tags read once per cluster id)",
            f"one DescribeCluster per active cluster per bot process: {ideal}",
            f"{describes} during the bursts",
            describes <= ideal,
            ""
            if describes <= ideal
            else "limit: concurrent commands that miss the tag cache each call DescribeCluster for the same id "
            "(no single-flight in EmrAdapter._is_managed)",
        )
    )
    return section
