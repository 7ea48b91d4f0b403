"""``bankmesh audit``: verify the services' audit logs, sign a checkpoint, read recent events.

Presentation only; what is checked and how is in mesh.runtime.audit and
services.common.audit. ``verify`` exits 0 when every chain is intact and
matches its signed checkpoints, 1 otherwise (and 1 for an error such as an
unreachable database), naming the first bad row of each broken chain.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from mesh.runtime.errors import MeshError

if TYPE_CHECKING:  # the database stack is imported by the commands that use it
    from mesh.runtime.audit import AuditLocation

audit_app = typer.Typer(
    help="The hash-chained audit logs: verify them, sign a checkpoint, read recent events.",
    no_args_is_help=True,
    add_completion=False,
)
console = Console()
err_console = Console(stderr=True)

DataDir = Annotated[
    Path,
    typer.Option("--data-dir", help="The mesh's data directory (audit keys and checkpoints)."),
]
Service = Annotated[
    str | None,
    typer.Option("--service", help="Only this service (account, identity or payment)."),
]

NEXT_STEPS = (
    "Treat this as an incident: keep the database and the checkpoint files as they are "
    "(copy them aside), find who had superuser access, and compare the named rows with your "
    "backups (`bankmesh backup --list`). docs/operations.md, 'When verify fails'."
)


def _fail(exc: MeshError) -> typer.Exit:
    err_console.print(Text.assemble(("error: ", "bold red"), exc.message))
    if exc.hint:
        err_console.print(Text.assemble(("hint: ", "bold"), exc.hint))
    return typer.Exit(1)


@audit_app.command()
def verify(
    data_dir: DataDir = Path(".bankmesh"),
    service: Service = None,
    database_url: Annotated[
        str,
        typer.Option(
            "--database-url",
            help="One service's database instead of the mesh's (with --service).",
        ),
    ] = "",
    checkpoints: Annotated[
        Path | None,
        typer.Option("--checkpoints", help="With --database-url: its checkpoint file."),
    ] = None,
    public_key: Annotated[
        Path | None,
        typer.Option("--public-key", help="With --database-url: its public key (PEM)."),
    ] = None,
    no_checkpoints: Annotated[
        bool, typer.Option("--no-checkpoints", help="Check the chain alone.")
    ] = False,
) -> None:
    """Walk each chain, recompute every hash, check the signed checkpoints; name the first bad row."""
    from mesh.runtime import audit

    try:
        if database_url:
            if service is None:
                raise MeshError("--database-url needs --service (whose audit log it holds)")
            if (checkpoints is None) != (public_key is None):
                raise MeshError("--checkpoints and --public-key go together")
            locations = [audit.AuditLocation(service, database_url, checkpoints, public_key)]
            reports = [audit.verify(location) for location in _without(locations, no_checkpoints)]
        else:
            server = os.environ.get("DATABASE_URL") or None
            with audit.mesh_audit_logs(data_dir, server, audit.services_to_check(service)) as found:
                reports = [audit.verify(location) for location in _without(found, no_checkpoints)]
    except MeshError as exc:
        raise _fail(exc) from None
    table = Table(title="audit logs")
    for column in ("service", "rows", "head", "checkpoints", "newest checkpoint", "result"):
        table.add_column(column)
    for report in reports:
        newest = report.newest_checkpoint
        table.add_row(
            report.service,
            str(report.rows),
            f"{report.head_seq} {report.head_hash.hex()[:12]}" if report.rows else "empty",
            str(report.checkpoints),
            f"seq {newest.seq} at {newest.signed_at}" if newest else "none",
            Text("intact", style="green")
            if report.intact
            else Text(f"BROKEN at row {report.findings[0].seq}", style="bold red"),
        )
    console.print(table)
    broken = [r for r in reports if not r.intact]
    for report in broken:
        first = report.findings[0]
        err_console.print(
            Text.assemble(
                ("error: ", "bold red"),
                f"{report.service}: first bad row {first.seq} ({first.problem.value}): ",
                first.message,
            )
        )
        for finding in report.findings[1:6]:
            err_console.print(f"  also: {finding.problem.value}: {finding.message}")
        if len(report.findings) > 6:
            err_console.print(f"  ... and {len(report.findings) - 6} more")
    if broken:
        err_console.print(Text.assemble(("hint: ", "bold"), NEXT_STEPS))
        raise typer.Exit(1)
    if any(r.rows and not r.checkpoints for r in reports) and not no_checkpoints:
        console.print(
            "note: a chain without a signed checkpoint is checked for consistency only; "
            "`bankmesh audit checkpoint` signs its head now"
        )


def _without(locations: Sequence[AuditLocation], no_checkpoints: bool) -> list[AuditLocation]:
    if not no_checkpoints:
        return list(locations)
    return [replace(location, checkpoints=None, public_key=None) for location in locations]


@audit_app.command()
def checkpoint(data_dir: DataDir = Path(".bankmesh"), service: Service = None) -> None:
    """Sign the head of each chain now (services also do it every minute and when they stop)."""
    from mesh.runtime import audit

    try:
        server = os.environ.get("DATABASE_URL") or None
        with audit.mesh_audit_logs(data_dir, server, audit.services_to_check(service)) as found:
            for location in found:
                line = audit.checkpoint_now(location)
                if line is None:
                    console.print(f"{location.service}: the newest checkpoint has the head already")
                else:
                    console.print(
                        f"{location.service}: signed seq {line['seq']} into {location.checkpoints}"
                    )
    except MeshError as exc:
        raise _fail(exc) from None


@audit_app.command()
def tail(
    service: Annotated[str, typer.Argument(help="account, identity or payment.")],
    data_dir: DataDir = Path(".bankmesh"),
    limit: Annotated[int, typer.Option("-n", "--limit", min=1, help="How many events.")] = 20,
    action: Annotated[str, typer.Option(help="Only actions starting with this.")] = "",
    subject: Annotated[str, typer.Option(help="Only this subject (an id).")] = "",
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object a line.")] = False,
) -> None:
    """The newest events of a service's audit log, newest first."""
    from mesh.runtime import audit
    from services.common.audit import reader

    try:
        server = os.environ.get("DATABASE_URL") or None
        with audit.mesh_audit_logs(data_dir, server, audit.services_to_check(service)) as found:
            events = reader.recent(found[0].database_url, limit, action, subject)
    except MeshError as exc:
        raise _fail(exc) from None
    if as_json:
        for e in events:
            typer.echo(
                json.dumps(
                    {
                        "seq": e.seq,
                        "occurred_at": e.occurred_at.isoformat(),
                        "actor": e.actor,
                        "action": e.action,
                        "subject": e.subject,
                        "outcome": e.outcome,
                        "source": e.source,
                        "details": json.loads(e.details),
                    }
                )
            )
        return
    table = Table(title=f"{service}: newest audit events")
    for column in ("seq", "when (UTC)", "actor", "action", "subject", "outcome", "details"):
        table.add_column(column, overflow="fold")
    for e in events:
        table.add_row(
            str(e.seq),
            f"{e.occurred_at.astimezone(UTC):%Y-%m-%d %H:%M:%S}",
            e.actor,
            e.action,
            e.subject,
            Text(e.outcome, style="green" if e.outcome == "success" else "yellow"),
            e.details,
        )
    console.print(table)
