"""Section 3 — scale: `!emr status` in an account with many terminated clusters.

Account B gets 20 active clusters, 5 of them managed (carrying the tag), then
terminated clusters are added level by level (``run_job_flow`` then
``terminate_job_flows`` in batches of 50, through the emulator's API like any
client; a quarter of them carry the managed tag, as old managed clusters
would). At each level ``!emr status`` goes through Errbot's test backend,
interleaved with the raw filtered ``ListClusters`` call, and the emulator
counts the AWS requests each status makes. For contrast, the table also shows
what listing the account *without* the server-side state filter costs (every
page of 50, as a bot filtering on its side would have to).
"""

from __future__ import annotations

import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.harness import (
    ACTIVE_STATES,
    Bot,
    MovedClock,
    Section,
    Summary,
    Target,
    assumed_emr_client,
    emr_config,
    ms,
    num,
    table,
    timed,
)
from demo.emulator import MANAGED_TAG, Emulator

MANAGED = 5
UNMANAGED = 15
BATCH = 50
SLOPE = 1.2
ALLOWANCE = 0.005


def add_terminated(emulator: Emulator, count: int, start: int) -> float:
    """Create *count* clusters in account B and terminate them; return the seconds it took."""
    emr = emulator.emr_b()
    started = time.perf_counter()
    for first in range(start, start + count, BATCH):
        ids = []
        for n in range(first, min(first + BATCH, start + count)):
            tag = {"Key": MANAGED_TAG[0], "Value": MANAGED_TAG[1]} if n % 4 == 0 else {"Key": "team", "Value": "old"}
            ids.append(emulator.run_cluster(f"old-{n:04d}", tags=[tag]))
        emr.terminate_job_flows(JobFlowIds=ids)
    return time.perf_counter() - started


def _list_everything(client: Any) -> int:
    """Every cluster of the account, page by page, no state filter; returns the number of pages."""
    pages, params = 0, dict[str, str]()
    while True:
        page = client.list_clusters(**params)
        pages += 1
        if not page.get("Marker"):
            return pages
        params = {"Marker": page["Marker"]}


def run(emulator: Emulator, workdir: Path, *, levels: list[int], samples: int) -> Section:
    section = Section("scale", f"3. Scale: !emr status with {MANAGED} managed of 20 active clusters")
    emulator.reset()
    seeding = time.perf_counter()
    emulator.seed(
        managed_names=[f"team-{i}" for i in range(MANAGED)],
        unmanaged_names=[f"other-{i}" for i in range(UNMANAGED)],
    )
    seed_active = time.perf_counter() - seeding
    raw_client = assumed_emr_client(emulator)
    results: list[dict[str, Any]] = []
    terminated = 0
    # The wall clock stands still while statuses are measured: the tags' scheduled re-read (every 5 minutes,
    # spread over the clusters) then never falls inside a run and makes one status of thirty look costlier.
    with MovedClock(datetime.now(UTC)), Bot(workdir / "scale-data", emr_config(emulator)) as bot:
        emulator.reset_counts()
        first_reply, first_seconds = bot.say("!emr status")
        cold = Counter({a: n for (_, a), n in emulator.requests.items()})
        shown = sum(1 for line in first_reply.splitlines() if line.startswith("team-"))
        if shown != MANAGED:
            raise RuntimeError(f"!emr status showed {shown} managed clusters, expected {MANAGED}:\n{first_reply}")
        for level in sorted(levels):
            seed_seconds = add_terminated(emulator, level - terminated, terminated) if level > terminated else 0.0
            terminated = max(terminated, level)
            for _ in range(3):  # warm-up at this level
                bot.say("!emr status")
            raw_times: list[float] = []
            status_times: list[float] = []
            requests: Counter[str] = Counter()
            for _ in range(samples):
                raw_times.append(timed(lambda: raw_client.list_clusters(ClusterStates=ACTIVE_STATES)))
                emulator.reset_counts()
                reply, seconds = bot.say("!emr status")
                requests.update({a: n for (_, a), n in emulator.requests.items()})
                if reply.startswith("✗"):
                    raise RuntimeError(f"!emr status failed at {level} terminated clusters: {reply}")
                status_times.append(seconds)
            unfiltered_pages = 0
            unfiltered_times: list[float] = []
            for _ in range(max(3, samples // 10)):
                started = time.perf_counter()
                unfiltered_pages = _list_everything(raw_client)
                unfiltered_times.append(time.perf_counter() - started)
            results.append(
                {
                    "terminated": level,
                    "total_clusters": level + MANAGED + UNMANAGED,
                    "seed_seconds": round(seed_seconds, 2),
                    "status": Summary.of(status_times).as_ms(),
                    "raw_filtered_list": Summary.of(raw_times).as_ms(),
                    "requests_per_status": {a: n / samples for a, n in requests.items()},
                    "unfiltered_listing": {"pages": unfiltered_pages, **Summary.of(unfiltered_times).as_ms()},
                }
            )

    def per_status(r: dict[str, Any]) -> str:
        return ", ".join(f"{a} {num(n)}" for a, n in sorted(r["requests_per_status"].items())) or "none"

    rows = [
        [
            r["terminated"],
            r["total_clusters"],
            f"{r['status']['median_ms']:.1f}",
            f"{r['status']['p95_ms']:.1f}",
            f"{r['raw_filtered_list']['median_ms']:.1f}",
            f"{r['status']['median_ms'] / r['raw_filtered_list']['median_ms']:.2f}×",
            per_status(r),
            f"{r['unfiltered_listing']['pages']} / {r['unfiltered_listing']['median_ms']:.0f}",
            f"{r['seed_seconds']:.1f}",
        ]
        for r in results
    ]
    section.say(
        f"{samples} `!emr status` per level through Errbot, interleaved with the raw filtered ListClusters; ms.",
        "",
        *table(
            [
                "terminated",
                "clusters",
                "status median",
                "status p95",
                "raw median",
                "status ÷ raw",
                "AWS requests per status",
                "unfiltered: pages / ms",
                "seeding s",
            ],
            rows,
        ),
        "",
        f"  first status (cold tag cache): {ms(first_seconds)} ms, requests: "
        + ", ".join(f"{a} {n}" for a, n in sorted(cold.items())),
        f"  seeding: 20 active clusters + role in {seed_active:.1f} s; "
        f"{terminated} terminated clusters in {sum(r['seed_seconds'] for r in results):.1f} s "
        f"(run_job_flow each, terminate_job_flows by {BATCH}, through moto's API)",
    )
    section.data = {
        "managed": MANAGED,
        "active": MANAGED + UNMANAGED,
        "levels": results,
        "cold_first_status": {"ms": round(first_seconds * 1000, 3), "requests": dict(cold)},
        "seed_active_seconds": round(seed_active, 2),
    }
    low, high = results[0], results[-1]
    same_requests = all(r["requests_per_status"] == low["requests_per_status"] for r in results)
    limit = SLOPE * low["status"]["median_ms"] + ALLOWANCE * 1000
    section.targets.append(
        Target(
            f"scale: !emr status from {low['terminated']} to {high['terminated']} terminated clusters",
            f"flat: same AWS requests per status; median ≤ {SLOPE}× the {low['terminated']}-level median + "
            f"{ALLOWANCE * 1000:.0f} ms",
            f"requests {per_status(low)} → {per_status(high)}; median {low['status']['median_ms']:.1f} → "
            f"{high['status']['median_ms']:.1f} ms (limit {limit:.1f})",
            same_requests and high["status"]["median_ms"] <= limit,
        )
    )
    return section
