"""emr-chatops benchmarks: API economy, command overhead, scale, poller, memory.

Run ``.venv/bin/python -m bench`` (``make bench``) from the repository root.
Everything runs against moto's server on loopback (:class:`demo.emulator.Emulator`,
in-process, with its request counter) and Errbot's own test backend with the
real plugin; the memory section runs the real ``errbot`` process of the demo.
No AWS or Slack account is touched; ``AWS_*`` variables are cleared first.

The report is printed as plain-text tables and written as JSON to
``bench/results/latest.json`` (gitignored). Timings are medians, p95s or
ratios measured in the same run, so a slow machine shifts every series alike.

Run time on a 2-CPU VM: about 7 minutes by default (5 of them the memory
section's 5-minute run), about 75 seconds with ``--quick``. See ``--help`` for the
flags that scale each section; ``--only SECTION`` runs a subset.

Sections (see each module's docstring for the method):

* :mod:`bench.sts` — AssumeRole requests for a burst of commands from 20 threads and
  across restarts, beside a naive assume-per-command baseline;
* :mod:`bench.overhead` — median/p95 of ``!emr status|lock|unlock`` through Errbot
  against the raw boto3 call, with a cProfile breakdown;
* :mod:`bench.scale` — ``!emr status`` with 0 / 200 / 1,980 terminated clusters;
* :mod:`bench.poller` — AWS requests and CPU per tick, requests per hour;
* :mod:`bench.memory` — peak RSS of the demo bot with the poller at 1 s.

``bench/storage_kill.py`` and ``bench/kill_bot.py`` are separate benchmarks (durability under kill -9).
"""
