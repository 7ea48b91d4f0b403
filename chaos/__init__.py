"""`make chaos`: the bank's workload on a real mesh while faults are injected, then a strict check.

A run starts every service as a process, with PostgreSQL and Redis of its own,
puts a fault-injecting proxy on every hop, opens a small bank and lets
clients pay between its accounts (gRPC and the REST edge, idempotency keys,
retries) while readers check every balance read. On a schedule it kills and
restarts each service, restarts PostgreSQL, stops Redis, drops and delays
traffic between services, and rotates and lets lapse certificates. Then it
checks that no money was made, lost or moved twice, and reports.
``docs/reliability.md`` describes the run and its latest results.

Modules:

* ``cli``        ``python -m chaos``: options, progress, exit status
* ``run``        one run, start to finish
* ``profiles``   how big and long a run is (short for the tests, long for make chaos)
* ``cluster``    the mesh under test: engines, certificates, services, proxies
* ``engines``    the run's own PostgreSQL and Redis, which faults restart
* ``proxy``      the fault-injecting TCP proxy
* ``faults``     the fault kinds and the scheduler
* ``workload``   the bank: setup, payers, readers and their checks
* ``history``    what the clients saw
* ``checker``    the invariants, against both databases
* ``report``     results/latest.json and results/latest.png
"""
