"""Section 5 — memory: the real bot process running the demo with the poller at 1 s.

``python -m demo`` is started as a subprocess with ``EMR_POLL_SECONDS=1``
and its stdin kept open (the Text console waits for input); the demo process
holds the emulator and starts ``errbot`` as its child. That child — the bot —
is found through ``/proc`` (the process whose parent is the demo) and sampled
twice a second: ``VmRSS`` and ``VmHWM`` (peak resident set) from
``/proc/<pid>/status``, CPU time from ``/proc/<pid>/stat``. Every 15 s an
``!emr status`` is typed on the console, so commands run beside the poller.
Closing stdin (Ctrl-D) ends the demo.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.harness import ROOT, Section, Target, table

PROMPT = "➡ @errbot]"
STATUS_EVERY = 15.0
SAMPLE_EVERY = 0.5
MIB = 1024 * 1024


def children(pid: int) -> list[int]:
    """Pids whose parent is *pid* (scanning /proc/*/stat; no psutil needed)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) "
        if int(fields[1]) == pid:
            found.append(int(entry.name))
    return found


def status_kib(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM of *pid*, in KiB."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0])
    return out


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of *pid* so far."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _wait_for(path: Path, text: str, process: subprocess.Popen[Any], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while text not in path.read_text(encoding="utf-8", errors="replace"):
        if process.poll() is not None:
            raise RuntimeError(f"the demo exited early:\n{path.read_text(errors='replace')[-2000:]}")
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"{text!r} did not appear within {timeout} s:\n{path.read_text(errors='replace')[-2000:]}"
            )
        time.sleep(0.2)


def run(workdir: Path, *, seconds: float) -> Section:
    section = Section("memory", "5. Memory: the demo bot (real errbot process), poller every 1 s")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "SLACK_", "EMR_"))}
    env.update(EMR_POLL_SECONDS="1", PYTHONUNBUFFERED="1")
    output = workdir / "demo-console.txt"
    data_dir = workdir / "demo-data"
    data_dir.mkdir(parents=True, exist_ok=True)
    samples: list[tuple[float, int, int]] = []  # (t, VmRSS KiB, VmHWM KiB)
    with output.open("w", encoding="utf-8") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "demo", "--keep-data", str(data_dir)],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=sink,
            stderr=subprocess.STDOUT,
            text=True,
            encoding="utf-8",
        )
        assert process.stdin is not None
        try:
            _wait_for(output, PROMPT, process, timeout=120)
            bots = [pid for pid in children(process.pid) if b"errbot" in Path(f"/proc/{pid}/cmdline").read_bytes()]
            if len(bots) != 1:
                raise RuntimeError(f"expected one errbot child of the demo (pid {process.pid}), found {bots}")
            bot = bots[0]
            started = time.monotonic()
            cpu_start = cpu_seconds(bot)
            next_status = started
            statuses = 0
            while (now := time.monotonic()) - started < seconds:
                if process.poll() is not None:
                    raise RuntimeError(f"the demo exited during the run:\n{output.read_text(errors='replace')[-2000:]}")
                if now >= next_status:
                    process.stdin.write("!emr status\n")
                    process.stdin.flush()
                    statuses += 1
                    next_status += STATUS_EVERY
                kib = status_kib(bot)
                samples.append((now - started, kib["VmRSS"], kib["VmHWM"]))
                time.sleep(SAMPLE_EVERY)
            cpu_used = cpu_seconds(bot) - cpu_start
            elapsed = time.monotonic() - started
            process.stdin.close()  # Ctrl-D: errbot exits, then the demo stops the emulator
            exit_code = process.wait(timeout=60)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    console = output.read_text(encoding="utf-8", errors="replace")
    replies = console.count("analytics (j-")
    errors = console.count("✗")

    def rss_at(t: float) -> int:
        return min(samples, key=lambda s: abs(s[0] - t))[1]

    peak = max(s[2] for s in samples)
    first, last = samples[0][1], samples[-1][1]
    settle = min(30.0, seconds / 3)
    tail = [s for s in samples if s[0] >= settle]
    growth_per_min = (tail[-1][1] - tail[0][1]) / max(tail[-1][0] - tail[0][0], 1e-9) * 60 if len(tail) > 1 else 0.0
    marks = sorted({0.0, settle, seconds / 2, samples[-1][0]})
    section.say(
        f"{elapsed:.0f} s of `python -m demo` with EMR_POLL_SECONDS=1 (a tick due every second), an `!emr status` "
        f"typed every {STATUS_EVERY:.0f} s ({statuses} sent, {replies} answered, {errors} ✗), "
        f"{len(samples)} samples of the errbot child process.",
        "",
        *table(["t (s)", "VmRSS (MiB)"], [[f"{t:.0f}", f"{rss_at(t) / 1024:.1f}"] for t in marks]),
        "",
        f"  peak RSS (VmHWM): {peak / 1024:.1f} MiB; RSS first → last sample: {first / 1024:.1f} → {last / 1024:.1f} MiB;"
        f" growth after {settle:.0f} s: {growth_per_min / 1024:+.2f} MiB/min",
        f"  CPU: {cpu_used:.1f} s over {elapsed:.0f} s ({cpu_used / elapsed * 100:.1f}% of one core) at 1 tick/s;"
        f" exit status {exit_code}",
    )
    section.data = {
        "seconds": round(elapsed, 1),
        "poll_seconds": 1,
        "peak_vmhwm_mib": round(peak / 1024, 2),
        "rss_first_mib": round(first / 1024, 2),
        "rss_last_mib": round(last / 1024, 2),
        "rss_growth_mib_per_min_after_settle": round(growth_per_min / 1024, 3),
        "cpu_seconds": round(cpu_used, 2),
        "statuses_sent": statuses,
        "statuses_answered": replies,
        "samples": [[round(t, 1), r, h] for t, r, h in samples[:: max(1, len(samples) // 120)]],
        "exit_code": exit_code,
    }
    section.targets.append(
        Target(
            "memory: peak RSS of the bot (demo, poller at 1 s)",
            "reported (no numeric target); it must stay alive and answer",
            f"{peak / 1024:.1f} MiB peak, {growth_per_min / 1024:+.2f} MiB/min after {settle:.0f} s, "
            f"{replies}/{statuses} statuses answered",
            exit_code == 0 and replies >= statuses - 1 and errors == 0,
        )
    )
    return section
