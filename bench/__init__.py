"""`make bench`: the mesh's throughput and latency, as ratios to baselines from the same run.

A shared two-core machine is noisy, so absolute numbers mean little from one
run to the next; the ratios (the ledger against a trivial echo service over
the same mTLS, against pgbench on the same PostgreSQL, and so on) are what
the targets in ``bench.report.TARGETS`` are about. ``docs/performance.md``
explains each scenario and how to read the results.

Modules:

* ``cli``        ``python -m bench``: options, the run, progress, results
* ``profiles``   how long and how wide a run is (smoke, quick, full)
* ``mesh``       the mesh as ``bankmesh up`` starts it, in a child process, plus the echo server
* ``echo``       the echo baseline's server process
* ``loadgen``    client processes, each an asyncio loop with grpc.aio channels
* ``workloads``  what one request of each scenario is
* ``scenarios``  the scenarios: setup, workload, availability
* ``pgbench``    PostgreSQL's own benchmark on the same server
* ``procstat``   RSS and CPU of processes from /proc
* ``report``     latest.json, latest.md, latest.png and the ``--check`` targets
"""
