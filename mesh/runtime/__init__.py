"""Running the mesh on one machine: PostgreSQL, service processes, endpoints.

The pieces, from the bottom up:

* ``postgres``: where PostgreSQL comes from (DATABASE_URL, or an embedded
  server under the data directory) and one database per service on it.
* ``supervisor``: starts each service as its own process under the
  service-process contract (environment in, ready file out, SIGTERM to stop),
  runs its migrations first, watches it, and writes ``endpoints.json`` so
  clients and ``bankmesh status`` can find the services.
* ``launcher``: puts the two together for ``bankmesh up``, including signal
  handling and the order of shutdown.
* ``status``: reads ``endpoints.json`` and asks each service for its gRPC
  health (the HTTPS edge: ``GET /readyz``).
* ``demo``: ``bankmesh demo``'s customers for a running mesh, and the curl
  commands of the README's walkthrough.

Failures the operator can fix are raised as ``errors.MeshError`` with a hint;
the CLI (``mesh.cli``) only renders progress, tables and those errors.
"""
