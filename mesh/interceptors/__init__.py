"""gRPC interceptors, one concern each.

Server side, `mesh.server.build_server` installs them in the order its
docstring lists (request id, tracing, access log, load shedding,
authentication, authorization, deadline, malformed requests, error mapping).
Client side, `mesh.client.MeshClient` installs those of `outbound.py`.
"""
