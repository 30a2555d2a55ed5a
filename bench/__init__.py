"""emr-chatops benchmarks: API economy, command overhead, scale, poller, memory, lateness, a hanging endpoint.

Run ``.venv/bin/python -m bench`` (``make bench``) from the repository root.
Everything runs against moto's server on loopback (:class:`demo.emulator.Emulator`,
in-process, with its request counter) and Errbot's own test backend with the
real plugin; the memory section runs the real ``errbot`` process of the demo.
No AWS or Slack account is touched; ``AWS_*`` variables are cleared first.

The report is printed as plain-text tables and written as JSON to
``bench/results/latest.json`` (gitignored). Timings are medians, p95s or
ratios measured in the same run, so a slow machine shifts every series alike.

Run time on a 2-CPU VM: about 9 minutes by default (5 of them the memory
section's 5-minute run), about 2 minutes with ``--quick``. See ``--help`` for the
flags that scale each section; ``--only SECTION`` runs a subset.

Sections (see each module's docstring for the method):

* :mod:`bench.sts` — AssumeRole requests for a burst of commands from 20 threads and
  across restarts, beside a naive assume-per-command baseline;
* :mod:`bench.overhead` — median/p95 of ``!emr status|lock|unlock`` through Errbot
  against the raw boto3 call, with a cProfile breakdown;
* :mod:`bench.scale` — ``!emr status`` with 0 / 200 / 1,980 terminated clusters;
* :mod:`bench.poller` — AWS requests and CPU per tick, requests per hour (ListClusters,
  DescribeCluster, ListSteps, …) with 1 and 20 managed clusters;
* :mod:`bench.memory` — peak RSS of the demo bot with the poller at 1 s;
* :mod:`bench.lateness` — automatic terminations against their deadlines, ticks at
  random (seeded) offsets;
* :mod:`bench.hang` — the answer time of a command against a hanging endpoint.

``bench/storage_kill.py`` and ``bench/kill_bot.py`` are separate benchmarks (durability under
kill -9); ``bench/mutants.py`` breaks the code on purpose and checks that the tests notice.
"""
