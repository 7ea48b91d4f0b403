"""The edge gateway: HTTPS+JSON for mobile clients, translated to the mesh's gRPC.

    client ──HTTPS (TLS 1.3), JSON, Bearer token──▶ edge ──gRPC, mTLS, as "edge"──▶ services

Routes come from the services' google.api.http annotations (`routes`), the
JSON mapping from json_format (`transcode`), errors are google.rpc.Status
(`errors`), tokens are checked here (`auth`) and the person rides on to the
services as a signed end-user assertion (mesh.assertions, set through
mesh.context.end_user). `app` wires it; `python -m mesh.edge` runs it.
"""
