"""The ``bankmesh`` command: run the mesh locally and ask how it is doing.

Only presentation lives here (spinners, tables, error wording); what ``up``
and ``status`` do is in mesh.runtime, so scripts and tests can do the same
without a terminal.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from mesh.pki import issue_mesh_identities
from mesh.runtime.errors import MeshError
from mesh.runtime.launcher import (
    DEFAULT_SERVICES,
    MeshConfig,
    RunningMesh,
    launch,
    with_replicas,
)
from mesh.runtime.status import check_all, read_endpoints

app = typer.Typer(
    help="Run the bankmesh services on this machine.",
    no_args_is_help=True,
    add_completion=False,
)
console = Console()
err_console = Console(stderr=True)

DataDir = Annotated[
    Path,
    typer.Option(
        "--data-dir",
        help="Holds the embedded PostgreSQL, certificates, service logs and endpoints.json.",
    ),
]


class _RichReporter:
    def __init__(self, console: Console) -> None:
        self.console = console

    @contextmanager
    def step(self, description: str) -> Iterator[None]:
        with self.console.status(f"{description}..."):
            yield
        self.console.print(Text.assemble(("✓ ", "green"), description))

    def started(self, mesh: RunningMesh) -> None:
        table = Table(title="bankmesh is up")
        for column in ("service", "address", "pid", "log file"):
            table.add_column(column)
        # One row per process: a replica is named like its log file (payment-2).
        for service in mesh.services:
            table.add_row(
                service.process_name,
                service.address,
                str(service.pid),
                str(service.log_file),
            )
        self.console.print(table)
        pg = mesh.embedded_postgres
        if pg is None:
            where = f"PostgreSQL (DATABASE_URL): {mesh.database}"
        elif pg.started:
            where = f"embedded PostgreSQL (pid {pg.pid}): {mesh.database}"
        else:
            where = (
                f"embedded PostgreSQL already running (pid {pg.pid}, left running): {mesh.database}"
            )
        self.console.print(Text(where))
        redis = mesh.embedded_redis
        if mesh.redis is None:
            pass  # no service uses Redis
        elif redis is None:
            self.console.print(Text(f"Redis (REDIS_URL): {mesh.redis}"))
        elif redis.started:
            self.console.print(Text(f"embedded Redis (pid {redis.pid}): {mesh.redis}"))
        else:
            self.console.print(
                Text(f"embedded Redis already running (pid {redis.pid}, reused): {mesh.redis}")
            )
        self.console.print(Text(f"endpoints: {mesh.endpoints_file}"))
        self.console.print(
            Text(f"Press Ctrl-C to stop (or: kill {mesh.supervisor_pid}).", style="bold")
        )

    def stopping(self, reason: str) -> None:
        self.console.print(Text(f"Stopping: {reason}", style="yellow"))

    def stopped(self, summary: str) -> None:
        self.console.print(Text(summary))

    def warn(self, message: str) -> None:
        err_console.print(Text(f"warning: {message}", style="yellow"))


def _fail(exc: MeshError) -> typer.Exit:
    err_console.print(Text.assemble(("error: ", "bold red"), exc.message))
    if exc.hint:
        err_console.print(Text.assemble(("hint: ", "bold yellow"), exc.hint))
    return typer.Exit(1)


@app.command()
def up(
    data_dir: DataDir = Path(".bankmesh"),
    listen_host: Annotated[
        str, typer.Option("--listen-host", help="Address the services listen on.")
    ] = "127.0.0.1",
    replicas: Annotated[
        list[str] | None,
        typer.Option(
            "--replicas",
            metavar="SERVICE=COUNT",
            help="Run COUNT processes (1-8) of SERVICE, each on its own port; repeatable.",
        ),
    ] = None,
) -> None:
    """Start PostgreSQL and Redis (DATABASE_URL / REDIS_URL, else embedded) and every service.

    Stops everything on Ctrl-C.
    """
    try:
        services = with_replicas(DEFAULT_SERVICES, replicas or [])
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--replicas") from None
    config = MeshConfig(
        data_dir=data_dir,
        listen_host=listen_host,
        database_url=os.environ.get("DATABASE_URL") or None,
        redis_url=os.environ.get("REDIS_URL") or None,
        services=services,
    )
    try:
        code = launch(config, _RichReporter(console))
    except MeshError as exc:
        raise _fail(exc) from None
    raise typer.Exit(code)


@app.command()
def status(
    data_dir: DataDir = Path(".bankmesh"),
    timeout: Annotated[float, typer.Option(help="Seconds to wait for each service.")] = 2.0,
) -> None:
    """Check each service of a running mesh with the gRPC health check."""
    try:
        endpoints = read_endpoints(data_dir)
        results = check_all(endpoints, timeout=timeout)
    except MeshError as exc:
        raise _fail(exc) from None
    table = Table(title=f"bankmesh status ({data_dir})")
    for column in ("service", "address", "health", "detail"):
        table.add_column(column)
    seen: dict[str, int] = {}
    for result in results:
        style = "green" if result.healthy else "red"
        # Replicas are named as `bankmesh up` names them: payment-1, payment-2.
        seen[result.name] = seen.get(result.name, 0) + 1
        label = result.name
        if len(endpoints.addresses(result.name)) > 1:
            label = f"{result.name}-{seen[result.name]}"
        table.add_row(label, result.address, Text(result.status, style=style), result.detail)
    console.print(table)
    if not endpoints.complete:
        console.print(
            Text(
                "the mesh is still starting: services not listed yet are on their way",
                "yellow",
            )
        )
    if endpoints.database:
        console.print(Text(f"database: {endpoints.database}"))
    if endpoints.redis:
        console.print(Text(f"redis: {endpoints.redis}"))
    if endpoints.credentials:
        console.print(
            Text(f"transport: mutual TLS as the operator ({endpoints.credentials['cert']})")
        )
    else:
        console.print(Text("transport: plaintext (the services do not serve mTLS)", style="yellow"))
    if not all(result.healthy for result in results):
        err_console.print(
            Text(
                "Some services are not serving: see their logs in "
                f"{Path(data_dir) / 'logs'}, or restart with `bankmesh up`.",
                style="yellow",
            )
        )
        raise typer.Exit(1)


DEFAULT_IDENTITIES = "account,payment,risk,identity,edge,operator"


@app.command()
def certs(
    data_dir: DataDir = Path(".bankmesh"),
    lifetime_hours: Annotated[
        float,
        typer.Option("--lifetime-hours", min=0.01, help="How long the new certificates last."),
    ] = 12.0,
    services: Annotated[
        str,
        typer.Option("--services", help="Comma-separated services to issue identities for."),
    ] = DEFAULT_IDENTITIES,
) -> None:
    """Issue fresh mTLS identities under DATA_DIR/pki (and the CA, when there is none).

    Running services pick up their new certificate at their next connection.
    """
    names = [name.strip() for name in services.split(",") if name.strip()]
    if not names:
        raise typer.BadParameter("name at least one service", param_hint="--services")
    pki_dir = data_dir / "pki"
    had_ca = (pki_dir / "ca" / "ca.pem").exists()
    try:
        issued = issue_mesh_identities(pki_dir, names, lifetime=timedelta(hours=lifetime_hours))
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--services") from None
    except OSError as exc:
        raise _fail(
            MeshError(
                f"cannot write certificates under {pki_dir}: {exc}",
                hint="check that the directory is writable by you, or pass another --data-dir",
            )
        ) from None
    if issued.ca.created:
        what = (
            "replaced the CA, which would expire before these certificates"
            if had_ca
            else "created the CA"
        )
        console.print(Text(f"{what}: {issued.ca.cert_path} (expires {_when(issued.ca.not_after)})"))
    table = Table(title=f"identities in {pki_dir}")
    for column in ("service", "SPIFFE id", "expires"):
        table.add_column(column)
    for identity in issued.identities.values():
        table.add_row(identity.service, identity.spiffe_id, _when(identity.not_after))
    console.print(table)
    if issued.ca.created and had_ca:
        err_console.print(
            Text(
                "warning: identities issued by the previous CA are no longer trusted; "
                "re-issue every service's and restart the mesh (`bankmesh up`)",
                style="yellow",
            )
        )


def _when(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
