"""Section 2 — command overhead: `!emr status|lock|unlock` through Errbot against the raw AWS call.

Each command in steady state costs one ``ListClusters`` (tags are cached), so
the reference is that call made with a pre-built boto3 client on assumed
credentials, against the same emulator. Samples are interleaved round by
round (raw, echo, status, …) so that a slow moment of the machine hits every
series alike. Latency is push_message → pop_message on Errbot's test backend,
queue hops included; ``!echo`` (Errbot's own Utils plugin) shows what those
hops and Errbot's dispatch cost on their own, and the direct calls of the
plugin's command methods what the plugin costs without Errbot, and the
plugin's state load/save (``Service._load``/``Service._save``, storage plus
``State.from_dict``/``to_dict``) what each of those costs. Warm-up rounds
first fill the history to its cap, as in a bot that has run for a while.
Nothing is subtracted from the judged figure.

A cProfile pass over direct command calls then splits a command's time into
the AWS call (``EmrAdapter.list_managed``), storage writes and reads
(``Service._save``/``Service._load``), and the rest.
"""

from __future__ import annotations

import cProfile
import pickle
import pstats
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.harness import (
    ACTIVE_STATES,
    Bot,
    FakeMessage,
    Section,
    StorageProbe,
    Summary,
    Target,
    assumed_emr_client,
    emr_config,
    ms,
    table,
    timed,
)
from demo.emulator import Emulator

SLOPE = 1.2
WARMUP_ROUNDS = 55
ALLOWANCE = 0.005  # seconds
PROFILED = {
    "AWS ListClusters (EmrAdapter.list_managed)": ("emrchatops/aws/adapter.py", "list_managed"),
    "storage writes (Service._save)": ("emrchatops/app/service.py", "_save"),
    "storage reads (Service._load)": ("emrchatops/app/service.py", "_load"),
}


def budget(raw: float) -> float:
    """The target: at most 1.2 × the raw call + 5 ms."""
    return SLOPE * raw + ALLOWANCE


def _profile(plugin: Any, rounds: int) -> dict[str, dict[str, float]]:
    """Per command: profiled ms per call and the share of each PROFILED function (under cProfile).

    Each round runs status, lock, unlock in turn (so every unlock releases a real hold), each
    under its own profiler; only the calling thread is profiled (the emulator answers on its own).
    """
    msg = FakeMessage("carol")
    calls: dict[str, Callable[[], str]] = {
        "status": lambda: plugin.emr_status(msg, ""),
        "lock": lambda: plugin.emr_lock(msg, ""),
        "unlock": lambda: plugin.emr_unlock(msg, ""),
    }
    profilers = {name: cProfile.Profile() for name in calls}
    for _ in range(rounds):
        for name, call in calls.items():
            profilers[name].enable()
            call()
            profilers[name].disable()
    out: dict[str, dict[str, float]] = {}
    for name, profiler in profilers.items():
        # pstats keeps {(file, line, func): (cc, nc, tt, ct, callers)} in an undeclared attribute.
        stats: Any = getattr(pstats.Stats(profiler), "stats")  # noqa: B009
        total = max(ct for (_, _, _, ct, _) in stats.values())  # the outermost frame: the whole call
        shares = {"total_ms_per_call": total / rounds * 1000}
        for label, (filename, function) in PROFILED.items():
            cumulative = sum(
                ct
                for (file, _, func), (_, _, _, ct, _) in stats.items()
                if file.endswith(filename) and func == function
            )
            shares[label] = cumulative / total if total else 0.0
        out[name] = shares
    return out


def run(emulator: Emulator, workdir: Path, *, rounds: int) -> Section:
    section = Section("overhead", "2. Command overhead: Errbot + plugin against the raw AWS call")
    emulator.reset()
    emulator.seed()
    raw_client = assumed_emr_client(emulator)
    series: dict[str, list[float]] = {
        k: []
        for k in (
            "raw",
            "echo",
            "status",
            "lock",
            "unlock",
            "direct status",
            "direct lock",
            "direct unlock",
            "state write",
            "state read",
            "state load",
            "state save",
        )
    }
    reads: dict[str, float] = {}
    writes: dict[str, float] = {}
    requests: dict[str, Counter[str]] = {}
    with Bot(workdir / "overhead-data", emr_config(emulator)) as bot:
        plugin = bot.plugin
        direct = FakeMessage("bob")
        # A colleague holds the cluster throughout, so the measured lock/unlock are a further hold and its
        # release: the common case. A cluster's first hold and last release also change EMR's own
        # auto-termination policy (the backstop, DESIGN §12: one more request each), not judged here.
        plugin.emr_lock(FakeMessage("carol"), "standing hold")

        def raw() -> None:
            series["raw"].append(timed(lambda: raw_client.list_clusters(ClusterStates=ACTIVE_STATES)))

        def via_errbot(name: str, text: str) -> None:
            reply, seconds = bot.say(text)
            if reply.startswith("✗"):
                raise RuntimeError(f"{text!r} was refused during the benchmark: {reply}")
            series[name].append(seconds)

        def direct_call(name: str, method: Callable[[Any, str], str]) -> None:
            series[f"direct {name}"].append(timed(lambda: method(direct, "")))

        def storage() -> None:
            # One write of the plugin's current state under a scratch key (pickle + SQLite commit + fsync),
            # and one read of it: the unit costs behind the table below.
            state = plugin.get("state")
            series["state write"].append(timed(lambda: plugin._store.set("bench-probe", state)))
            series["state read"].append(timed(lambda: plugin._store.get("state")))
            # What the plugin does per load / save: the same, plus State.from_dict / State.to_dict.
            with plugin.service._lock:
                series["state load"].append(timed(plugin.service._load))
                loaded = plugin.service._load()
                series["state save"].append(timed(lambda: plugin.service._save(loaded)))

        steps: list[Callable[[], None]] = [
            raw,
            lambda: series["echo"].append(bot.say("!echo ping")[1]),
            lambda: via_errbot("status", "!emr status"),
            lambda: direct_call("status", plugin.emr_status),
            raw,
            lambda: via_errbot("lock", "!emr lock benchmarking"),
            raw,
            lambda: via_errbot("unlock", "!emr unlock"),
            lambda: direct_call("lock", plugin.emr_lock),
            lambda: direct_call("unlock", plugin.emr_unlock),
            storage,
        ]
        # Warm-up: first token, tag cache, connection pools — and a full history (each round adds 4 events,
        # history is capped at 200), so that every load and save below handles a steady-state-sized state.
        for _ in range(WARMUP_ROUNDS):
            for step in steps:
                step()
        for values in series.values():
            values.clear()
        for _ in range(rounds):
            for step in steps:
                step()

        plugin._store.remove("bench-probe")
        probe = StorageProbe(plugin)
        totals: dict[str, Counter[str]] = {name: Counter() for name in ("status", "lock", "unlock")}
        for _ in range(10):  # status, lock, unlock in turn, so that every unlock releases a real hold
            for name in totals:
                emulator.reset_counts()
                probe.reset()
                bot.say(f"!emr {name}")
                totals[name].update({a: n for (_, a), n in emulator.requests.items()})
                totals[name]["(state writes)"] += probe.writes
                totals[name]["(state reads)"] += probe.reads
        for name, counts in totals.items():
            writes[name] = counts.pop("(state writes)", 0) / 10
            reads[name] = counts.pop("(state reads)", 0) / 10
            requests[name] = Counter({a: n / 10 for a, n in counts.items()})
        final = plugin.get("state")
        events = len(final.get("history", []))
        blob = pickle.dumps(final, protocol=5)
        profile = _profile(plugin, max(20, rounds // 4))

    stats = {name: Summary.of(values) for name, values in series.items()}
    raw_stats = stats["raw"]
    rows = []
    verdicts: dict[str, tuple[bool, bool]] = {}
    for name in (
        "raw",
        "echo",
        "state write",
        "state read",
        "state save",
        "state load",
        "direct status",
        "direct lock",
        "direct unlock",
        "status",
        "lock",
        "unlock",
    ):
        s = stats[name]
        label = {
            "raw": "raw ListClusters (boto3, assumed creds)",
            "echo": "!echo via Errbot (no AWS)",
            "state write": "storage set (pickle + SQLite commit, fsync)",
            "state read": "storage get (SQLite + unpickle)",
            "state save": "Service._save (State.to_dict + storage set)",
            "state load": "Service._load (storage get + State.from_dict)",
        }.get(name, f"{name} (plugin method, no Errbot)" if name.startswith("direct") else f"!emr {name} via Errbot")
        judged = name in ("status", "lock", "unlock")
        if judged:
            verdicts[name] = (s.median <= budget(raw_stats.median), s.p95 <= budget(raw_stats.p95))
        rows.append(
            [
                label,
                ms(s.median),
                ms(s.p95),
                f"{s.median / raw_stats.median:.2f}×",
                ms(budget(raw_stats.median)) if judged else "",
                ("met" if verdicts[name][0] else "MISSED") if judged else "",
                ("met" if verdicts[name][1] else "MISSED") if judged else "",
            ]
        )
    section.say(
        f"{rounds} interleaved rounds after warm-up; one user; milliseconds. Budget = {SLOPE}× raw + "
        f"{ALLOWANCE * 1000:.0f} ms (median against raw median, p95 against raw p95 = {ms(raw_stats.p95)} ms).",
        "",
        *table(["series", "median", "p95", "÷ raw median", "budget", "median", "p95"], rows),
        "",
        "  per command in steady state — AWS requests: "
        + "; ".join(f"{n}: " + ", ".join(f"{a} {c:g}" for a, c in sorted(r.items())) for n, r in requests.items())
        + " — storage writes/reads: "
        + ", ".join(f"{n} {w:g}/{reads[n]:g}" for n, w in writes.items()),
        f"  state size: {events} history events, {len(blob) / 1024:.1f} KiB pickled (history is capped at 200 events)",
        "",
        "  Where a command's time goes (cProfile over direct plugin calls; shares of the profiled time):",
        *table(
            ["command", "ms/call (profiled)", *[k.split(" (")[0] for k in PROFILED], "rest"],
            [
                [
                    name,
                    f"{p['total_ms_per_call']:.1f}",
                    *[f"{p[k] * 100:.0f}%" for k in PROFILED],
                    f"{max(0.0, 1 - sum(p[k] for k in PROFILED)) * 100:.0f}%",
                ]
                for name, p in profile.items()
            ],
            indent="    ",
        ),
    )
    section.data = {
        "rounds": rounds,
        "latency": {name: s.as_ms() for name, s in stats.items()},
        "budget_ms": {
            "median": round(budget(raw_stats.median) * 1000, 3),
            "p95": round(budget(raw_stats.p95) * 1000, 3),
        },
        "ratio_to_raw_median": {name: round(s.median / raw_stats.median, 3) for name, s in stats.items()},
        "requests_per_command": {name: dict(r) for name, r in requests.items()},
        "storage_writes_per_command": writes,
        "storage_reads_per_command": reads,
        "state_history_events": events,
        "state_pickle_bytes": len(blob),
        "profile": profile,
    }
    load, save = stats["state load"].median, stats["state save"].median
    for name, (median_ok, p95_ok) in verdicts.items():
        s = stats[name]
        note = ""
        if not (median_ok and p95_ok):
            note = (
                f"limit: besides its one ListClusters ({ms(raw_stats.median)} ms) the command does "
                f"{reads[name]:g} state loads (≈{ms(load)} ms each) and {writes[name]:g} state saves "
                f"(≈{ms(save)} ms each, fsynced) of the whole state ({events} history events); "
                f"Errbot's own hop (!echo) is {ms(stats['echo'].median)} ms"
            )
        section.targets.append(
            Target(
                f"overhead: !emr {name}",
                f"≤ {SLOPE}× raw + {ALLOWANCE * 1000:.0f} ms (median and p95)",
                f"median {ms(s.median)} ms vs budget {ms(budget(raw_stats.median))} ({s.median / raw_stats.median:.2f}× raw); "
                f"p95 {ms(s.p95)} ms vs {ms(budget(raw_stats.p95))}",
                median_ok and p95_ok,
                note,
            )
        )
    return section
