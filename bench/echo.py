"""The echo baseline: a trivial grpc.aio unary service over the mesh's mutual TLS.

``python -m bench.echo IDENTITY_DIR READY_FILE`` serves one method,
``/bankmesh.bench.v1.Echo/Echo``, which answers with the request's bytes.
No protobuf, no interceptors, no database: what is left is gRPC, HTTP/2,
TLS and Python, the floor under every real service. It uses the same server
credentials as the services (``mesh.tls.server_credentials``: client
certificates required, from the mesh CA), with an identity of its own
issued by ``mesh.pki``, and runs as a process of its own like they do.

Once serving it writes ``{"service", "address", "pid"}`` to READY_FILE, the
services' ready-file contract; SIGTERM stops it.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

import grpc
import grpc.aio

from mesh.tls import server_credentials

SERVICE = "echo"
METHOD = "/bankmesh.bench.v1.Echo/Echo"


async def _echo(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
    return request


async def serve(identity_dir: Path, ready_file: Path, listen: str = "127.0.0.1:0") -> None:
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
    handler = grpc.method_handlers_generic_handler(
        "bankmesh.bench.v1.Echo", {"Echo": grpc.unary_unary_rpc_method_handler(_echo)}
    )
    server.add_generic_rpc_handlers((handler,))
    port = server.add_secure_port(listen, server_credentials(identity_dir))
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    host = listen.rpartition(":")[0]
    tmp = ready_file.with_suffix(".tmp")
    tmp.write_text(
        json.dumps({"service": SERVICE, "address": f"{host}:{port}", "pid": os.getpid()})
    )
    tmp.replace(ready_file)
    await stop.wait()
    await server.stop(grace=1.0)


def main(argv: list[str]) -> None:
    if len(argv) != 2:
        raise SystemExit("usage: python -m bench.echo IDENTITY_DIR READY_FILE")
    asyncio.run(serve(Path(argv[0]), Path(argv[1])))


if __name__ == "__main__":
    main(sys.argv[1:])
