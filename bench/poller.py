"""Section 4 — poller economy: AWS requests and CPU per tick, requests per hour.

The account is the scale section's shape, smaller: 5 managed and 15 unmanaged
active clusters and 200 terminated ones. ``plugin.tick()`` (what Errbot's
poller thread calls every ``POLL_SECONDS``) is called directly:

* steady state, real durations on a frozen wall clock (every tick inside one 5-minute slot of the
  periodic re-reads, which the hourly figures count): requests per tick, wall time, and CPU time —
  ``time.process_time()`` (the whole process, *including the in-process
  emulator answering the request*) and ``time.thread_time()`` (the ticking
  thread only: the bot's own share);
* a new managed cluster appearing: its one DescribeCluster, then none;
* a simulated run at the default 30 s interval: the process clock is moved
  30 s before each tick (time-machine, as the test suite does), so the STS
  token ages and is renewed by the real code; requests per hour are counted,
  not computed. ``IDLE_MINUTES`` is 1440 and end of day off, so no rule
  terminates a cluster meanwhile (that would change the steady state);
* API economy per hour at the default 30 s, on a frozen clock moved 30 s
  before each tick (no other traffic): a fresh account with 1, then 20 managed
  clusters (no unmanaged ones), each held by a ``!emr lock`` so that the
  default idle rule (30 min) leaves them up; and 1 unheld cluster, which the
  idle rule terminates within the hour. The bot starts cold, the locks and a
  first tick warm it up, then the counter is reset and the requests of
  ``hours`` hours of ticks are counted by action, as the emulator sees them;
* resize detection (DESIGN §13): one held cluster, the poller at 30 s on a moved clock, its core
  group resized (2 → 19 instances, then back) at seeded random moments while the cluster stays
  WAITING; the delay from each resize to the first ``!emr status`` whose cost line shows the new
  instance count, and the ``ListInstanceGroups`` requests per hour this costs.
"""

from __future__ import annotations

import random
import statistics
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import time_machine

from bench.harness import Bot, MovedClock, Section, StorageProbe, Summary, Target, emr_config, num, table
from bench.scale import add_terminated
from demo.emulator import Emulator

DEFAULT_INTERVAL = 30  # seconds, the plugin's POLL_SECONDS default
ECONOMY_ACTIONS = (
    "ListClusters",
    "DescribeCluster",
    "ListSteps",
    "GetMetricData",
    "TerminateJobFlows",
    "AssumeRole",
    "ListInstanceGroups",  # the cost (DESIGN §13): once per cluster, after a state change, and every 5 min (resize)
)
ACTIVITY_READS_PER_HOUR = 12  # DESIGN §10: IsIdle at most once per 5 minutes, for any number of clusters
TAG_LIFETIME_MINUTES = 5  # DESIGN §3: a tag added or removed takes effect within 5 minutes
ECONOMY_START = datetime(2026, 12, 1, 1, 0, tzinfo=UTC)  # 10:00 in Tokyo, a Tuesday
INSTANCE_READS_PER_HOUR = 12  # DESIGN §13: a resize (the state stays WAITING) seen within 5 min: 12 reads/h/cluster
RESIZE_BOUND = 5 * 60 + DEFAULT_INTERVAL  # seconds: the 5-minute re-read, then the next tick
RESIZE_SEED = 20261201


def _counts(emulator: Emulator) -> Counter[str]:
    return Counter({a: n for (_, a), n in emulator.requests.items()})


def _fmt(counter: Counter[str] | dict[str, Any]) -> str:
    return ", ".join(f"{a} {num(n)}" for a, n in sorted(counter.items())) or "none"


def hourly(emulator: Emulator, data_dir: Path, *, managed: int, held: bool, hours: float) -> dict[str, Any]:
    """AWS requests per hour of ticks at the default interval, for *managed* clusters (held or not)."""
    names = [f"team-{i}" for i in range(managed)]
    ticks = round(hours * 3600 / DEFAULT_INTERVAL)
    with MovedClock(ECONOMY_START) as clock:
        emulator.reset()
        emulator.seed(managed_names=[], unmanaged_names=[])  # the role in account B
        ids = [emulator.run_cluster(name, managed=True) for name in names]
        with Bot(data_dir, emr_config(emulator)) as bot:  # IDLE_MINUTES: the default (30)
            if held:
                for name in names:
                    reply, _ = bot.say(f"!emr lock {name}")
                    if not reply.startswith("🔒"):
                        raise RuntimeError(f"!emr lock {name}: {reply[:200]}")
            bot.plugin.tick()
            emulator.reset_counts()
            tick_ms: list[float] = []
            for _ in range(ticks):
                clock.advance(DEFAULT_INTERVAL)
                started = time.perf_counter()
                bot.plugin.tick()
                tick_ms.append((time.perf_counter() - started) * 1000)
            counts = _counts(emulator)
        still_up = sum(1 for cluster_id in ids if emulator.cluster_state(cluster_id) in ("WAITING", "RUNNING"))
    return {
        "managed": managed,
        "held": held,
        "hours": hours,
        "ticks": ticks,
        "per_hour": {a: counts.get(a, 0) / hours for a in ECONOMY_ACTIONS},
        "other_per_hour": {a: n / hours for a, n in counts.items() if a not in ECONOMY_ACTIONS},
        "still_up": still_up,
        "tick_ms_median": statistics.median(tick_ms),
        "tick_ms_p95": statistics.quantiles(tick_ms, n=20)[-1] if len(tick_ms) >= 20 else max(tick_ms),
    }


def resize_detection(emulator: Emulator, data_dir: Path, *, resizes: int, seed: int) -> dict[str, Any]:
    """Resize a held WAITING cluster at random moments; how long until its cost counts the new size."""
    rng = random.Random(seed)
    with MovedClock(ECONOMY_START) as clock:
        emulator.reset()
        emulator.seed(managed_names=["analytics"], unmanaged_names=[])
        cluster_id = emulator.emr_b().list_clusters()["Clusters"][0]["Id"]
        with Bot(data_dir, emr_config(emulator, HOLD_REMIND_MINUTES="off", END_OF_DAY="off")) as bot:
            reply, _ = bot.say("!emr lock analytics")
            if not reply.startswith("🔒"):
                raise RuntimeError(f"!emr lock analytics: {reply[:200]}")
            bot.plugin.tick()
            emulator.reset_counts()
            started = clock.now
            delays: list[float] = []
            core = 2
            for _ in range(resizes):
                resize_at = clock.now + timedelta(seconds=rng.uniform(60, 900))
                while clock.now + timedelta(seconds=DEFAULT_INTERVAL) <= resize_at:
                    clock.advance(DEFAULT_INTERVAL)
                    bot.plugin.tick()
                clock.set(resize_at)
                core = 19 if core == 2 else 2
                emulator.resize(cluster_id, "CORE", core)
                wanted = f"{core + 1} × m5.xlarge,"  # after "(estimated prices; " when the table is estimates
                while True:
                    clock.advance(DEFAULT_INTERVAL)
                    reads = emulator.count("ListInstanceGroups")
                    bot.plugin.tick()
                    if emulator.count("ListInstanceGroups") > reads and wanted in bot.say("!emr status")[0]:
                        delays.append((clock.now - resize_at).total_seconds())
                        break
                    if (clock.now - resize_at).total_seconds() > 3600:
                        raise RuntimeError(f"a resize to {core + 1} instances not priced within an hour")
            hours = (clock.now - started).total_seconds() / 3600
            reads_per_hour = emulator.count("ListInstanceGroups") / hours
    return {
        "resizes": resizes,
        "seed": seed,
        "delays_seconds": delays,
        "hours": hours,
        "list_instance_groups_per_hour": reads_per_hour,
    }


def run(emulator: Emulator, workdir: Path, *, ticks: int, hours: float) -> Section:
    section = Section("poller", "4. Poller economy: one tick, and an hour of ticks")
    emulator.reset()
    emulator.seed(managed_names=[f"team-{i}" for i in range(5)], unmanaged_names=[f"other-{i}" for i in range(15)])
    add_terminated(emulator, 200, 0)
    config = emr_config(emulator, IDLE_MINUTES=1440)
    with Bot(workdir / "poller-data", config) as bot:
        plugin = bot.plugin
        emulator.reset_counts()
        plugin.tick()
        cold = _counts(emulator)
        for _ in range(3):
            plugin.tick()

        probe = StorageProbe(plugin)
        # Real durations, the wall clock held still: every steady tick falls inside one 5-minute slot of
        # the periodic re-reads (tags, instances), which the simulated hour below counts.
        with MovedClock(datetime.now(UTC)):
            emulator.reset_counts()
            wall: list[float] = []
            process_cpu: list[float] = []
            thread_cpu: list[float] = []
            for _ in range(ticks):
                p0, t0, w0 = time.process_time(), time.thread_time(), time.perf_counter()
                plugin.tick()
                wall.append(time.perf_counter() - w0)
                thread_cpu.append(time.thread_time() - t0)
                process_cpu.append(time.process_time() - p0)
            steady = _counts(emulator)
            per_tick = {a: n / ticks for a, n in steady.items()}
            writes_per_tick = probe.writes / ticks

            emulator.run_cluster("newcomer", managed=True)
            emulator.reset_counts()
            plugin.tick()
            newcomer_first = _counts(emulator)
            emulator.reset_counts()
            plugin.tick()
            newcomer_next = _counts(emulator)

        simulated_ticks = int(hours * 3600 / DEFAULT_INTERVAL)
        traveller = time_machine.travel(datetime.now(UTC), tick=True)
        coordinates = traveller.start()
        try:
            emulator.reset_counts()
            for _ in range(simulated_ticks):
                coordinates.shift(timedelta(seconds=DEFAULT_INTERVAL))
                plugin.tick()
            simulated = _counts(emulator)
        finally:
            traveller.stop()
    # Read from the emulator, not the plugin's state (whose internals are not this bench's business).
    active = emulator.emr_b().list_clusters(ClusterStates=["STARTING", "BOOTSTRAPPING", "RUNNING", "WAITING"])
    managed_left = sum(1 for c in active["Clusters"] if c["Name"].startswith("team-") or c["Name"] == "newcomer")

    economy = [
        hourly(emulator, workdir / "economy-1-held", managed=1, held=True, hours=hours),
        hourly(emulator, workdir / "economy-20-held", managed=20, held=True, hours=hours),
        hourly(emulator, workdir / "economy-1-unheld", managed=1, held=False, hours=hours),
        hourly(emulator, workdir / "economy-100-held", managed=100, held=True, hours=hours),
    ]
    resize = resize_detection(emulator, workdir / "resize", resizes=max(8, round(16 * hours)), seed=RESIZE_SEED)
    delays = resize["delays_seconds"]

    per_hour = {a: n / hours for a, n in simulated.items()}
    wall_s, process_s, thread_s = Summary.of(wall), Summary.of(process_cpu), Summary.of(thread_cpu)
    section.say(
        f"{ticks} ticks in steady state (real durations, the wall clock held inside one 5-minute slot), then a simulated {hours:g} h at the default "
        f"{DEFAULT_INTERVAL} s interval ({simulated_ticks} ticks, clock moved). Account: 5 managed + 15 other "
        "active clusters, 200 terminated.",
        "",
        *table(
            ["moment", "AWS requests"],
            [
                ["first tick (no token, cold tag cache)", _fmt(cold)],
                ["steady state, per tick", _fmt(per_tick)],
                ["a new managed cluster: next tick", _fmt(newcomer_first)],
                ["… and the tick after", _fmt(newcomer_next)],
                [f"per hour at {DEFAULT_INTERVAL} s (measured over {hours:g} h)", _fmt(per_hour)],
            ],
        ),
        "",
        *table(
            ["per tick (steady state)", "median ms", "p95 ms"],
            [
                ["wall time", f"{wall_s.median * 1000:.2f}", f"{wall_s.p95 * 1000:.2f}"],
                [
                    "CPU, process_time (bot + in-process emulator)",
                    f"{process_s.median * 1000:.2f}",
                    f"{process_s.p95 * 1000:.2f}",
                ],
                [
                    "CPU, thread_time (the ticking thread: the bot)",
                    f"{thread_s.median * 1000:.2f}",
                    f"{thread_s.p95 * 1000:.2f}",
                ],
            ],
        ),
        "",
        f"  state writes per steady-state tick: {writes_per_tick:g} (SQLite commits, each fsynced)",
        f"  at {DEFAULT_INTERVAL} s: {thread_s.median * 3600 / DEFAULT_INTERVAL:.2f} s of bot CPU per hour "
        f"({thread_s.median / DEFAULT_INTERVAL * 100:.3f}% of one core); managed clusters still active after the "
        f"simulated run: {managed_left} of 6",
        "",
        f"API economy per hour at the default {DEFAULT_INTERVAL} s, clock moved, measured over {hours:g} h "
        f"({economy[0]['ticks']} ticks) after a warm-up; managed clusters only, IDLE_MINUTES 30 (default):",
        "",
        *table(
            ["managed clusters", *ECONOMY_ACTIONS, "other", "still up", "tick ms median (p95)"],
            [
                [
                    f"{e['managed']} {'held' if e['held'] else 'unheld'}",
                    *(num(round(e["per_hour"][a], 2)) for a in ECONOMY_ACTIONS),
                    _fmt({a: round(n, 2) for a, n in e["other_per_hour"].items()}),
                    f"{e['still_up']} of {e['managed']}",
                    f"{e['tick_ms_median']:.1f} ({e['tick_ms_p95']:.1f})",
                ]
                for e in economy
            ],
        ),
        "",
        f"Resize detection (DESIGN §13): a held WAITING cluster, its core group resized 2 ↔ 19 at {len(delays)} "
        f"random moments (seed {resize['seed']}), the poller at {DEFAULT_INTERVAL} s: priced at its new size "
        f"{min(delays):.0f} / {statistics.median(delays):.0f} / {max(delays):.0f} s after the resize "
        f"(min / median / max; bound {RESIZE_BOUND} s: the 5-minute re-read, then the next tick); "
        f"ListInstanceGroups {resize['list_instance_groups_per_hour']:.1f} per hour for that cluster "
        f"(over {resize['hours']:.1f} h: one per 5 minutes, one a minute while a group is RESIZING)",
    )
    section.data = {
        "ticks": ticks,
        "cold_tick": dict(cold),
        "steady_per_tick": per_tick,
        "state_writes_per_tick": writes_per_tick,
        "new_cluster_tick": dict(newcomer_first),
        "tick_after_new_cluster": dict(newcomer_next),
        "simulated_hours": hours,
        "simulated_ticks": simulated_ticks,
        "per_hour_at_30s": per_hour,
        "wall_ms": wall_s.as_ms(),
        "process_cpu_ms": process_s.as_ms(),
        "thread_cpu_ms": thread_s.as_ms(),
        "economy_per_hour_at_30s": economy,
        "resize_detection": resize,
    }
    steady_ok = per_tick == {"ListClusters": 1.0}
    # A new unheld cluster gets EMR's auto-termination policy once (the backstop, DESIGN §12), and its
    # instances are read once for its cost (DESIGN §13).
    newcomer_ok = newcomer_first == Counter(
        {"ListClusters": 1, "DescribeCluster": 1, "PutAutoTerminationPolicy": 1, "ListInstanceGroups": 1}
    ) and newcomer_next == Counter({"ListClusters": 1})
    section.targets.append(
        Target(
            "poller: requests per steady-state tick",
            "one ListClusters; no DescribeCluster for a cluster already seen within the tag lifetime; "
            "a new unheld cluster: its tags, its backstop policy and its instances, once",
            f"{_fmt(per_tick)}; new cluster: {_fmt(newcomer_first)}, then {_fmt(newcomer_next)}",
            steady_ok and newcomer_ok,
        )
    )
    # DESIGN §3: a tag change takes effect within 5 minutes, so at most one tag read per cluster per 5 minutes
    # (the whole account is listed per tick: 21 active clusters above), plus one re-read before each termination.
    reads_allowed = [
        (
            f"{e['managed']} {'held' if e['held'] else 'unheld'}",
            e["per_hour"]["DescribeCluster"],
            (60 / TAG_LIFETIME_MINUTES) * e["managed"] + e["per_hour"]["TerminateJobFlows"],
        )
        for e in economy
    ]
    section.targets.append(
        Target(
            "poller: activity reads (IsIdle) per hour at 30 s",
            f"GetMetricData ≤ {ACTIVITY_READS_PER_HOUR} per hour for any number of clusters up to 100",
            "; ".join(f"{e['managed']} managed: {num(round(e['per_hour']['GetMetricData'], 2))}" for e in economy),
            all(e["per_hour"]["GetMetricData"] <= ACTIVITY_READS_PER_HOUR for e in economy),
        )
    )
    section.targets.append(
        Target(
            "poller: instance reads (resize detection) per hour at 30 s",
            f"ListInstanceGroups ≤ {INSTANCE_READS_PER_HOUR} per managed cluster per hour with no resize; "
            f"a resize priced within {RESIZE_BOUND} s",
            "; ".join(
                f"{e['managed']} {'held' if e['held'] else 'unheld'}: {num(round(e['per_hour']['ListInstanceGroups'], 2))}"
                for e in economy
            )
            + f"; resizes priced after {min(delays):.0f}–{max(delays):.0f} s",
            all(e["per_hour"]["ListInstanceGroups"] <= INSTANCE_READS_PER_HOUR * e["managed"] for e in economy)
            and max(delays) <= RESIZE_BOUND,
        )
    )
    reads_allowed.append(("6 managed + 15 other", per_hour.get("DescribeCluster", 0), (60 / TAG_LIFETIME_MINUTES) * 21))
    section.targets.append(
        Target(
            "poller: tag reads per hour at 30 s",
            f"DescribeCluster ≤ one per active cluster per {TAG_LIFETIME_MINUTES} min, + one per termination",
            "; ".join(
                f"{name}: {num(round(got, 2))} (ceiling {num(round(ceiling, 2))})"
                for name, got, ceiling in reads_allowed
            ),
            all(got <= ceiling for _, got, ceiling in reads_allowed),
        )
    )
    return section
