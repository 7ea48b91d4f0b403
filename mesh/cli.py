"""The ``bankmesh`` command: run the mesh locally, ask how it is doing, move money.

Only presentation lives here (spinners, tables, panels, error wording). What
``up`` and ``status`` do is in mesh.runtime, and what the operator commands
(``accounts``, ``deposit``, ``pay``) do is in mesh.operator, so scripts and
tests can do the same without a terminal.

Every failure the operator can act on is printed as ``error:`` and ``hint:``
with exit code 1; a refused call shows the reason the service sent
(INSUFFICIENT_FUNDS, ...). So does a payment that was recorded but did not go
through (declined, failed, rejected, expired), after its panel: a script
should not take it for a success. Malformed arguments (an amount with too
many decimals, an unknown service in ``--replicas``) are usage errors, exit
code 2.

``bankmesh risk ...`` is the risk service's own CLI (``services.risk.cli:app``),
mounted here but imported only when used: it loads scikit-learn, which would
otherwise add a second to every other command. A checkout without it simply
has no ``risk`` command. ``bankmesh keys ...`` and ``bankmesh users ...`` are
the identity service's (``services.identity.cli:app``: its signing and data
keys, its staff users), mounted the same way.

``bankmesh audit ...`` (mesh.audit_cli) verifies the services' hash-chained
audit logs against their signed checkpoints, signs one, and shows recent events.

``bankmesh demo`` (mesh.runtime.demo) gives a running mesh two customers who
sign in at the edge, and prints the curl commands to try the HTTPS API with.
"""

from __future__ import annotations

import importlib
import importlib.util
import ipaddress
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from google.protobuf.timestamp_pb2 import Timestamp
from rich.console import Console, Group
from rich.panel import Panel
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    SpinnerColumn,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.rule import Rule
from rich.table import Table
from rich.text import Text
from typer.core import TyperGroup

from bankmesh.account.v1 import account_pb2
from bankmesh.common.v1 import context_pb2, money_pb2
from bankmesh.payment.v1 import payment_pb2, payment_service_pb2
from mesh.audit_cli import audit_app
from mesh.operator import AmountError, Operator, RpcFailed, hint_for, parse_amount
from mesh.pki import CA_CERT, issue_mesh_identities
from mesh.runtime import backup as backups
from mesh.runtime import demo as demos
from mesh.runtime.errors import MeshError
from mesh.runtime.launcher import (
    DEFAULT_SERVICES,
    EDGE,
    MeshConfig,
    RunningMesh,
    launch,
    with_port,
    with_replicas,
)
from mesh.runtime.postgres import wal_archive_dir
from mesh.runtime.status import check_all, local_url, read_endpoints
from mesh.runtime.supervisor import RunningService
from services.common.money import MINOR_UNIT_EXPONENTS, Money

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
                service.process_name, service.address, str(service.pid), str(service.log_file)
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
        for service in mesh.services:
            if service.url:
                data_dir = mesh.endpoints_file.parent
                self.console.print(_public_panel(service.process_name, data_dir, service))
        self.console.print(
            Text(f"Press Ctrl-C to stop (or: kill {mesh.supervisor_pid}).", style="bold")
        )

    def stopping(self, reason: str) -> None:
        self.console.print(Text(f"Stopping: {reason}", style="yellow"))

    def stopped(self, summary: str) -> None:
        self.console.print(Text(summary))

    def warn(self, message: str) -> None:
        err_console.print(Text(f"warning: {message}", style="yellow"))


def _public_panel(name: str, data_dir: Path, service: RunningService) -> Panel:
    """The edge's URL, what to trust, and what to try: the lines a newcomer looks for."""
    url = local_url(service.url or "")
    rows: list[tuple[str, str | Text]] = [("HTTPS API", Text(url, style="bold green"))]
    if service.identity_dir is not None:
        ca = _shown(service.identity_dir / CA_CERT)
        rows.append(("trust", f"curl --cacert {ca} {url}/readyz"))
    demo = "bankmesh demo"
    if data_dir != Path(".bankmesh").resolve():
        demo += f" --data-dir {_shown(data_dir)}"
    rows.append(("try it", f"{demo}   (demo customers and the curl commands to paste)"))
    rows.append(("API", f"{url}/openapi.json, docs/api.md"))
    return Panel(_grid(*rows), title=f"{name}: for apps", expand=False, border_style="green")


def _shown(path: Path) -> Path:
    """``path`` relative to the working directory when it is under it: shorter to paste."""
    try:
        return path.relative_to(Path.cwd())
    except ValueError:
        return path


def _fail(exc: MeshError) -> typer.Exit:
    err_console.print(Text.assemble(("error: ", "bold red"), exc.message))
    if exc.hint:
        err_console.print(Text.assemble(("hint: ", "bold yellow"), exc.hint))
    return typer.Exit(1)


# A port that stays the same across restarts, so an app under development
# keeps its base URL; `--edge-port 0` takes any free one.
DEFAULT_EDGE_PORT = 8443


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
    edge_port: Annotated[
        int,
        typer.Option(
            "--edge-port",
            min=0,
            max=65535,
            help="Port of the HTTPS edge for apps (0: any free port, needed for edge replicas).",
        ),
    ] = DEFAULT_EDGE_PORT,
) -> None:
    """Start PostgreSQL and Redis (DATABASE_URL / REDIS_URL, else embedded) and every service.

    The services speak gRPC over mTLS to each other; apps reach them through
    the HTTPS edge, whose URL is printed once everything is up. Stops
    everything on Ctrl-C.
    """
    try:
        services = with_replicas(DEFAULT_SERVICES, replicas or [])
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--replicas") from None
    services = with_port(services, EDGE, edge_port)
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
            Text("the mesh is still starting: services not listed yet are on their way", "yellow")
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


# --- operator commands ----------------------------------------------------------

accounts_app = typer.Typer(
    help="Open and inspect ledger accounts on the running mesh.",
    no_args_is_help=True,
    add_completion=False,
)
app.add_typer(accounts_app, name="accounts")


class AccountKind(StrEnum):
    customer = "customer"
    settlement = "settlement"
    internal = "internal"


_ACCOUNT_TYPES = {
    AccountKind.customer: account_pb2.ACCOUNT_TYPE_CUSTOMER,
    AccountKind.settlement: account_pb2.ACCOUNT_TYPE_SETTLEMENT,
    AccountKind.internal: account_pb2.ACCOUNT_TYPE_INTERNAL,
}

Currency = Annotated[
    str, typer.Option("--currency", help="ISO 4217 code of the money (EUR, USD, JPY, ...).")
]


@accounts_app.command("open")
def accounts_open(
    customer: Annotated[str, typer.Option("--customer", help="Customer who owns the account.")],
    currency: Currency = "EUR",
    kind: Annotated[
        AccountKind, typer.Option("--type", help="Kind of account.")
    ] = AccountKind.customer,
    data_dir: DataDir = Path(".bankmesh"),
) -> None:
    """Open an account and print its id (alone, for scripts: ACC=$(bankmesh accounts open ...))."""
    code = _currency(currency)
    with _operator(data_dir) as operator:
        account = operator.open_account(customer, code, _ACCOUNT_TYPES[kind])
    typer.echo(account.account_id)


@accounts_app.command("list")
def accounts_list(
    customer: Annotated[str, typer.Option("--customer", help="Whose accounts to list.")],
    data_dir: DataDir = Path(".bankmesh"),
) -> None:
    """List a customer's accounts with their balances."""
    with _operator(data_dir) as operator:
        accounts = operator.list_accounts(customer)
    if not accounts:
        console.print(Text(f"customer {customer!r} has no accounts", style="yellow"))
        console.print(Text(f"open one with `bankmesh accounts open --customer {customer}`"))
        return
    table = Table(title=f"accounts of {customer}")
    # An id is copied into the next command: never shortened with an ellipsis.
    table.add_column("id", min_width=36)
    for column in ("currency", "type", "status"):
        table.add_column(column)
    for column in ("posted", "available"):
        table.add_column(column, justify="right")
    for account in accounts:
        table.add_row(
            account.account_id,
            account.currency_code,
            _account_type(account.type),
            _status(account.status),
            _money(account.balances.posted),
            _money(account.balances.available),
        )
    console.print(table)


@accounts_app.command("show")
def accounts_show(
    account_id: Annotated[str, typer.Argument(metavar="ID", help="The account's id.")],
    data_dir: DataDir = Path(".bankmesh"),
) -> None:
    """Show an account's balances and its latest statement entries."""
    with _operator(data_dir) as operator:
        account = operator.get_account(account_id)
        entries = operator.latest_entries(account_id)
    console.print(_account_panel(account))
    if not entries:
        console.print(Text("no statement entries yet"))
        return
    table = Table(title=f"latest {len(entries)} statement entries, newest first")
    table.add_column("time (UTC)")
    table.add_column("transfer", min_width=36)
    for column in ("kind", "direction"):
        table.add_column(column)
    for column in ("posted", "pending change", "available after"):
        table.add_column(column, justify="right")
    for entry in entries:
        table.add_row(
            _timestamp(entry.create_time, zone=False),
            entry.transfer_id,
            _enum_name(account_pb2.TransferKind.Name(entry.kind), "TRANSFER_KIND_"),
            _enum_name(account_pb2.EntryDirection.Name(entry.direction), "ENTRY_DIRECTION_"),
            _money(entry.posted_amount),
            _money(entry.pending_change),
            _money(entry.balances_after.available),
        )
    console.print(table)


@app.command()
def deposit(
    account_id: Annotated[str, typer.Argument(metavar="ACCOUNT", help="Account to credit.")],
    amount: Annotated[str, typer.Argument(metavar="AMOUNT", help="Like 100 or 10.50.")],
    currency: Currency = "EUR",
    data_dir: DataDir = Path(".bankmesh"),
) -> None:
    """Put money into an account, from the mesh's settlement account for the currency."""
    code = _currency(currency)
    minor_units = _amount(amount, code, "AMOUNT")
    with _operator(data_dir) as operator:
        transfer = operator.deposit(account_id, minor_units, code)
        account = operator.get_account(account_id)
    grid = _grid(
        ("transfer", transfer.transfer_id),
        ("amount", _money(transfer.amount)),
        ("from", f"{transfer.debit_account_id} (settlement, {code})"),
        ("to", transfer.credit_account_id),
        ("available now", _money(account.balances.available)),
    )
    console.print(Panel(grid, title="deposited", expand=False))


@app.command()
def pay(
    source: Annotated[str, typer.Option("--from", help="Account the money leaves.")],
    destination: Annotated[str, typer.Option("--to", help="Account the money goes to.")],
    amount: Annotated[str, typer.Option("--amount", help="Like 10.50 (never rounded).")],
    currency: Currency = "EUR",
    key: Annotated[
        str | None,
        typer.Option(
            "--key", help="Idempotency key; reuse it to retry a payment safely (default: new)."
        ),
    ] = None,
    device: Annotated[
        str | None, typer.Option("--device", help="Device id the customer paid from.")
    ] = None,
    ip: Annotated[str | None, typer.Option("--ip", help="Customer's IP address.")] = None,
    lat: Annotated[float | None, typer.Option("--lat", help="Customer's latitude.")] = None,
    lon: Annotated[float | None, typer.Option("--lon", help="Customer's longitude.")] = None,
    data_dir: DataDir = Path(".bankmesh"),
) -> None:
    """Make a payment through the payment service (scored by risk, posted on the ledger)."""
    code = _currency(currency)
    minor_units = _amount(amount, code, "--amount")
    idempotency_key = key or str(uuid.uuid4())
    request = payment_service_pb2.CreatePaymentRequest(
        idempotency_key=idempotency_key,
        source_account_id=source,
        destination_account_id=destination,
        amount=money_pb2.Money(minor_units=minor_units, currency_code=code),
        client_context=_client_context(device, ip, lat, lon),
    )
    try:
        with Operator(data_dir) as operator:
            payment = operator.pay(request)
    except RpcFailed as exc:
        if exc.reason != "IDEMPOTENCY_KEY_REUSED":
            # Whatever happened, the same key never pays twice: retrying with
            # it either finds this payment or makes it.
            exc.hint = f"{exc.hint}; to retry this payment safely: --key {idempotency_key}"
        raise _fail(exc) from None
    except MeshError as exc:
        raise _fail(exc) from None
    console.print(_payment_panel(payment, idempotency_key))
    if payment.status in _DID_NOT_GO_THROUGH:
        status = payment_pb2.PaymentStatus.Name(payment.status).removeprefix("PAYMENT_STATUS_")
        why = f": {payment.failure_reason}" if payment.failure_reason else ""
        err_console.print(Text.assemble(("error: ", "bold red"), f"the payment is {status}{why}"))
        hint = hint_for(payment.failure_reason)
        if hint:
            err_console.print(Text.assemble(("hint: ", "bold yellow"), hint))
        raise typer.Exit(1)


@app.command()
def demo(data_dir: DataDir = Path(".bankmesh")) -> None:
    """Give the running mesh two demo customers who sign in at the edge, and show how to try it.

    DEMO ONLY: the sign-ins share a published password. Running it again
    changes nothing.
    """
    try:
        with console.status("Setting up the demo customers..."):
            made = demos.seed_demo(data_dir)
    except MeshError as exc:
        raise _fail(exc) from None
    customers = Table(box=None, padding=(0, 2), show_edge=False)
    for column in ("customer", "sign in with", "account (EUR)", "available"):
        customers.add_column(column, no_wrap=True)
    for customer in made.customers:
        customers.add_row(
            customer.person.full_name,
            customer.email,
            customer.account_id,
            _amount_text(customer.available_minor_units, demos.CURRENCY),
        )
    info = _grid(
        ("HTTPS API", Text(made.edge_url, style="bold green")),
        ("trust", f"{made.ca_file} (the mesh CA: curl --cacert {made.ca_file})"),
        ("password", Text.assemble(made.password, ("   demo only: it is public", "bold red"))),
    )
    console.print(
        Panel(
            Group(info, Text(""), customers),
            title="bankmesh demo: for a local mesh only",
            expand=False,
        )
    )
    console.print(
        Rule("try the API: paste these into bash or zsh (they need curl and jq)", align="left")
    )
    for number, command in enumerate(demos.walkthrough(made), start=1):
        console.print(Text(f"# {number}. {command.title}", style="dim"), soft_wrap=True)
        console.print(Text(command.shell), soft_wrap=True)
    console.print(Text("More: docs/api.md, and the README's walkthrough.", style="dim"))


@contextmanager
def _operator(data_dir: Path) -> Iterator[Operator]:
    """An Operator whose MeshErrors (refusals included) end the command with error and hint."""
    try:
        with Operator(data_dir) as operator:
            yield operator
    except MeshError as exc:
        raise _fail(exc) from None


def _currency(code: str) -> str:
    normalized = code.strip().upper()
    if normalized not in MINOR_UNIT_EXPONENTS:
        raise typer.BadParameter(
            f"{code!r} is not an ISO 4217 currency code (e.g. EUR, USD, JPY)",
            param_hint="--currency",
        )
    return normalized


def _amount(text: str, currency: str, param_hint: str) -> int:
    try:
        return parse_amount(text, currency)
    except AmountError as exc:
        raise typer.BadParameter(str(exc), param_hint=param_hint) from None


def _client_context(
    device: str | None, ip: str | None, lat: float | None, lon: float | None
) -> context_pb2.ClientContext:
    if ip is not None:
        try:
            ipaddress.ip_address(ip)
        except ValueError:
            raise typer.BadParameter(
                f"{ip!r} is not an IPv4 or IPv6 address", param_hint="--ip"
            ) from None
    if (lat is None) != (lon is None):
        raise typer.BadParameter("give both --lat and --lon, or neither", param_hint="--lat/--lon")
    context = context_pb2.ClientContext(
        channel=context_pb2.CHANNEL_API, device_id=device or "", ip_address=ip or ""
    )
    if lat is not None and lon is not None:
        if not (-90 <= lat <= 90 and -180 <= lon <= 180):
            raise typer.BadParameter(
                "latitude is -90..90 and longitude -180..180", param_hint="--lat/--lon"
            )
        context.geo.CopyFrom(context_pb2.GeoPoint(latitude=lat, longitude=lon))
    return context


# Recorded, and final, but no money moved: the command did not do what was asked.
_DID_NOT_GO_THROUGH = frozenset(
    {
        payment_pb2.PAYMENT_STATUS_DECLINED,
        payment_pb2.PAYMENT_STATUS_FAILED,
        payment_pb2.PAYMENT_STATUS_REJECTED,
        payment_pb2.PAYMENT_STATUS_EXPIRED,
    }
)

_PAYMENT_STYLES = {
    "COMPLETED": "green",
    "PENDING": "yellow",
    "IN_REVIEW": "yellow",
    "PARTIALLY_REFUNDED": "yellow",
    "REFUNDED": "yellow",
}


def _payment_panel(payment: payment_pb2.Payment, idempotency_key: str) -> Panel:
    status = _enum_name(payment_pb2.PaymentStatus.Name(payment.status), "PAYMENT_STATUS_")
    outcome = _enum_name(payment_pb2.RiskOutcome.Name(payment.risk_outcome), "RISK_OUTCOME_")
    rows: list[tuple[str, str | Text]] = [
        ("payment", payment.payment_id),
        ("status", Text(status.upper(), style=_PAYMENT_STYLES.get(status.upper(), "red"))),
        ("amount", _money(payment.amount)),
        ("from", payment.source_account_id),
        ("to", payment.destination_account_id),
        ("risk", outcome if outcome != "unspecified" else "not scored"),
    ]
    if payment.risk_reasons:
        rows.append(("risk reasons", ", ".join(payment.risk_reasons)))
    if payment.failure_reason:
        rows.append(("failure", Text(payment.failure_reason, style="red")))
    rows.append(("idempotency key", idempotency_key))
    return Panel(_grid(*rows), title="payment", expand=False)


def _account_panel(account: account_pb2.Account) -> Panel:
    balances = account.balances
    currency = account.currency_code
    limits = account.limits
    if limits.debits_must_not_exceed_credits:
        overdraft = limits.overdraft_limit_minor_units
        limit = (
            f"overdraft up to {_amount_text(overdraft, currency)}" if overdraft else "no overdraft"
        )
    elif limits.credits_must_not_exceed_debits:
        limit = "credits may not exceed debits"
    else:
        limit = "none"
    grid = _grid(
        ("customer", account.customer_id or "-"),
        ("type", _account_type(account.type)),
        ("currency", currency),
        ("status", _status(account.status)),
        ("posted", _money(balances.posted)),
        ("available", _money(balances.available)),
        (
            "pending",
            f"debits {_amount_text(balances.debits_pending, currency)}, "
            f"credits {_amount_text(balances.credits_pending, currency)}",
        ),
        ("limits", limit),
        ("opened", _timestamp(account.create_time)),
    )
    return Panel(grid, title=f"account {account.account_id}", expand=False)


def _grid(*rows: tuple[str, str | Text]) -> Table:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    for label, value in rows:
        grid.add_row(label, value)
    return grid


def _money(money: money_pb2.Money) -> str:
    return _amount_text(money.minor_units, money.currency_code)


def _amount_text(minor_units: int, currency: str) -> str:
    return Money(minor_units, currency).format()


def _account_type(value: account_pb2.AccountType) -> str:
    return _enum_name(account_pb2.AccountType.Name(value), "ACCOUNT_TYPE_")


def _status(value: account_pb2.AccountStatus) -> str:
    return _enum_name(account_pb2.AccountStatus.Name(value), "ACCOUNT_STATUS_")


def _enum_name(name: str, prefix: str) -> str:
    return name.removeprefix(prefix).lower()


def _timestamp(moment: Timestamp, *, zone: bool = True) -> str:
    text = moment.ToDatetime(tzinfo=UTC).strftime("%Y-%m-%d %H:%M:%S")
    return f"{text} UTC" if zone else text


# --- backup and restore -------------------------------------------------------------


class _RichBackupReporter:
    """Spinners for short steps, a progress bar for copies and recovery."""

    def __init__(self, console: Console) -> None:
        self.console = console

    @contextmanager
    def step(self, description: str) -> Iterator[None]:
        with self.console.status(f"{description}..."):
            yield
        self.console.print(Text.assemble(("✓ ", "green"), description))

    @contextmanager
    def progress(self, description: str, unit: str) -> Iterator[backups.Advance]:
        if not self.console.is_terminal:  # a log file wants the outcome, not the bar
            with self.step(description):
                yield lambda done, total=None: None
            return
        amount = DownloadColumn() if unit == "bytes" else TaskProgressColumn()
        columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), amount)
        with Progress(*columns, TimeElapsedColumn(), console=self.console, transient=True) as bar:
            task = bar.add_task(description, total=None)

            def advance(done: float, total: float | None = None) -> None:
                bar.update(task, completed=done, total=total)

            yield advance
        self.console.print(Text.assemble(("✓ ", "green"), description))

    def warn(self, message: str) -> None:
        err_console.print(Text(f"warning: {message}", style="yellow"))


class BackupFormat(StrEnum):
    plain = "plain"
    tar = "tar"


@app.command()
def backup(
    data_dir: DataDir = Path(".bankmesh"),
    to: Annotated[
        Path | None,
        typer.Option(
            "--to",
            help="Where backups go (default DATA_DIR/backups/base, or .../logical with --logical).",
        ),
    ] = None,
    backup_format: Annotated[
        BackupFormat,
        typer.Option("--format", help="plain: the cluster's files; tar: gzipped tar files."),
    ] = BackupFormat.plain,
    logical: Annotated[
        bool,
        typer.Option(
            "--logical",
            help="pg_dump each service database instead: portable, but not point-in-time.",
        ),
    ] = False,
    databases: Annotated[
        list[str] | None,
        typer.Option(
            "--database",
            help="With --logical: dump this database (repeatable; default every bankmesh_*).",
        ),
    ] = None,
    wal_archive: Annotated[
        Path | None,
        typer.Option(
            "--wal-archive",
            help="With DATABASE_URL: the directory the server's archive_command fills.",
        ),
    ] = None,
    restart: Annotated[
        bool,
        typer.Option(
            "--restart", help="Restart a running embedded PostgreSQL to turn on WAL archiving."
        ),
    ] = False,
    prune: Annotated[
        bool,
        typer.Option("--prune", help="After the backup, delete all but the newest --keep."),
    ] = False,
    prune_only: Annotated[
        bool, typer.Option("--prune-only", help="Prune without taking a backup.")
    ] = False,
    keep: Annotated[
        int, typer.Option("--keep", min=1, help="Base (and logical) backups kept by a prune.")
    ] = 6,
    list_backups: Annotated[
        bool, typer.Option("--list", help="List the backups and the WAL archive, and stop.")
    ] = False,
) -> None:
    """Back up the mesh's PostgreSQL: a verified base backup, plus the continuous WAL archive.

    Uses DATABASE_URL when set, else the embedded PostgreSQL of DATA_DIR. With
    the WAL archive, `bankmesh restore` can restore any moment after the backup.
    """
    external = os.environ.get("DATABASE_URL") or None
    base_root = to or data_dir / "backups" / "base"
    logical_root = to or data_dir / "backups" / "logical"
    archive = wal_archive if external else wal_archive_dir(data_dir)
    reporter = _RichBackupReporter(console)
    try:
        if list_backups:
            _list_backups(base_root, logical_root, archive)
            return
        if not prune_only:
            with backups.mesh_database(
                data_dir, external, wal_archive=wal_archive, restart=restart, reporter=reporter
            ) as source:
                if logical:
                    taken = backups.take_logical_backup(
                        source, logical_root, databases=databases or (), reporter=reporter
                    )
                    _show_logical_backup(taken)
                else:
                    made = backups.take_base_backup(
                        source, base_root, format=backup_format.value, reporter=reporter
                    )
                    _show_base_backup(made)
        if prune or prune_only:
            pruned = backups.prune(
                base_root,
                keep,
                wal_archive=archive,
                logical_root=logical_root,
            )
            _show_prune(pruned, keep)
    except MeshError as exc:
        raise _fail(exc) from None


@app.command()
def restore(
    into: Annotated[
        Path,
        typer.Option("--into", help="A new directory: the restored cluster goes to INTO/postgres."),
    ],
    backup_dir: Annotated[
        Path | None,
        typer.Option(
            "--backup",
            help="A base backup, or a directory of them (the newest that ends by the target "
            "time is used; default DATA_DIR/backups/base).",
        ),
    ] = None,
    target_time: Annotated[
        str | None,
        typer.Option(
            "--target-time",
            help='Restore to this moment, like "2026-11-29T12:00:00Z" (default: the latest).',
        ),
    ] = None,
    wal_archive: Annotated[
        Path | None,
        typer.Option("--wal-archive", help="The WAL archive, when not where the backup says."),
    ] = None,
    keep_running: Annotated[
        bool,
        typer.Option("--keep-running", help="Leave the restored PostgreSQL running to inspect."),
    ] = False,
    timeout: Annotated[
        float, typer.Option("--timeout", min=1, help="Seconds recovery may take.")
    ] = 3600.0,
    data_dir: DataDir = Path(".bankmesh"),
) -> None:
    """Restore a base backup into a new directory, recovered to a point in time.

    Replays the WAL archive up to the last transaction committed at or before
    --target-time, starts a new timeline and reports what it restored. The
    live data directory is never touched.
    """
    target = _target_time(target_time) if target_time else None
    source = backup_dir or data_dir / "backups" / "base"
    try:
        restored = backups.restore_base_backup(
            source,
            into,
            target_time=target,
            wal_archive=wal_archive,
            reporter=_RichBackupReporter(console),
            timeout=timeout,
        )
    except MeshError as exc:
        raise _fail(exc) from None
    try:
        _show_restore(restored)
    finally:
        if not keep_running:
            restored.stop()
    if keep_running:
        pid = restored.process.pid if restored.process else "?"
        console.print(Text(f"The restored PostgreSQL (pid {pid}) is running: {restored.url}"))
        console.print(Text(f"Stop it with: kill -INT {pid}", style="bold"))
    else:
        console.print(
            Text(
                f"Stopped. Run the restored mesh with: bankmesh up --data-dir {into}", style="bold"
            )
        )


def _target_time(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise typer.BadParameter(
            f"{text!r} is not an ISO 8601 time like 2026-11-29T12:00:00Z",
            param_hint="--target-time",
        ) from None
    if moment.tzinfo is None:
        raise typer.BadParameter(
            f"{text!r} has no timezone: add Z for UTC, or an offset like +01:00",
            param_hint="--target-time",
        )
    return moment


def _instant(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f UTC")


def _size(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"


def _show_base_backup(made: backups.BaseBackup) -> None:
    grid = _grid(
        ("directory", str(made.directory)),
        ("from", made.source),
        ("PostgreSQL", made.server_version),
        ("format", f"{made.format}, verified with pg_verifybackup"),
        ("size", _size(made.size_bytes)),
        ("WAL", f"timeline {made.timeline}, {made.start_lsn} to {made.end_lsn}"),
        ("restorable", f"from {_instant(made.finished_at)} on"),
        ("WAL archive", str(made.wal_archive) if made.wal_archive else "none: this moment only"),
    )
    console.print(Panel(grid, title="base backup", expand=False))


def _show_logical_backup(taken: backups.LogicalBackup) -> None:
    table = Table(title=f"logical backup in {taken.directory} (not point-in-time)")
    table.add_column("database")
    table.add_column("dump")
    table.add_column("size", justify="right")
    for database, dump in taken.dumps.items():
        table.add_row(database, dump.name, _size(dump.stat().st_size))
    console.print(table)
    console.print(Text(f"taken at {_instant(taken.taken_at)} from {taken.source}"))
    console.print(
        Text("restore one with: pg_restore --create --dbname postgres <file>.dump", style="bold")
    )


def _show_prune(pruned: backups.PruneResult, keep: int) -> None:
    for path in pruned.removed:
        console.print(Text(f"removed {path}"))
    wal = f", {pruned.wal_removed} WAL segments" if pruned.wal_removed else ""
    console.print(
        Text.assemble(
            ("✓ ", "green"),
            f"Pruned to the newest {keep}: {len(pruned.removed)} backups{wal} removed, "
            f"{_size(pruned.bytes_freed)} freed",
        )
    )
    if pruned.oldest_wal_kept:
        console.print(Text(f"WAL kept from segment {pruned.oldest_wal_kept} on"))


def _list_backups(base_root: Path, logical_root: Path, archive: Path | None) -> None:
    base = backups.list_base_backups(base_root)
    logical = backups.list_logical_backups(logical_root)
    table = Table(title="backups")
    for column in ("directory", "kind", "restorable from / taken", "first WAL"):
        table.add_column(column)
    table.add_column("size", justify="right")
    for made in base:
        table.add_row(
            str(made.directory),
            f"base ({made.format})",
            _instant(made.finished_at),
            made.start_wal,
            _size(made.size_bytes),
        )
    for taken in logical:
        table.add_row(
            str(taken.directory), "logical", _instant(taken.taken_at), "-", _size(taken.size_bytes)
        )
    console.print(table)
    if archive is None:
        console.print(Text("WAL archive: unknown (pass --wal-archive)", style="yellow"))
        return
    segments, size, first, last = backups.archive_summary(archive)
    console.print(Text(f"WAL archive {archive}: {segments} segments, {_size(size)}"))
    if first and last:
        console.print(Text(f"  from {first} to {last}"))
    if base:
        console.print(
            Text(f"point-in-time restores possible from {_instant(base[0].finished_at)} on")
        )


def _show_restore(restored: backups.RestoredServer) -> None:
    rows: list[tuple[str, str | Text]] = [
        ("base backup", str(restored.backup.directory)),
        ("target", _instant(restored.target_time) if restored.target_time else "the latest"),
        (
            "last transaction",
            _instant(restored.last_transaction_at)
            if restored.last_transaction_at
            else "none replayed",
        ),
        ("stopped at", restored.stopped_at or "the end of the WAL"),
        ("timeline", str(restored.timeline) if restored.timeline else "unchanged"),
        ("cluster", str(restored.pgdata)),
        ("server log", str(restored.log_file)),
    ]
    console.print(Panel(_grid(*rows), title="restored", expand=False))
    table = Table(title="databases restored")
    table.add_column("database")
    table.add_column("size", justify="right")
    for name, size in restored.databases:
        table.add_row(name, _size(size))
    console.print(table)


# --- bankmesh risk ----------------------------------------------------------------


class _LazyCommands(TyperGroup):
    """The commands of another Typer app, imported the first time they are listed or run.

    Only the app's commands are taken over, not a callback of its own: the
    risk and identity CLIs have none. ``subgroup`` takes the commands of one
    of the app's groups instead (identity's ``keys``, its ``users``).
    """

    target = ""  # "module:attribute" of a typer.Typer
    subgroup = ""

    def _load(self) -> None:
        if self.commands:
            return
        module_name, _, attribute = self.target.partition(":")
        group = typer.main.get_command(getattr(importlib.import_module(module_name), attribute))
        if self.subgroup:
            group = getattr(group, "commands", {})[self.subgroup]
        self.commands.update(getattr(group, "commands", {}))

    def list_commands(self, ctx: Any) -> list[str]:
        self._load()
        return super().list_commands(ctx)

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        self._load()
        return super().get_command(ctx, cmd_name)


class _RiskCommands(_LazyCommands):
    target = "services.risk.cli:app"


class _KeyCommands(_LazyCommands):
    target = "services.identity.cli:app"
    subgroup = "keys"


class _UserCommands(_LazyCommands):
    target = "services.identity.cli:app"
    subgroup = "users"


def _mount(commands: type[_LazyCommands], name: str, help_text: str) -> None:
    """Add ``commands`` as ``bankmesh NAME`` when the checkout has their module."""
    module = commands.target.partition(":")[0]
    try:
        present = importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        # ImportError: services.risk itself is missing; ValueError: a module
        # set to None in sys.modules, which is how an import is blocked.
        present = False
    if present:
        app.add_typer(
            typer.Typer(cls=commands, no_args_is_help=True, add_completion=False),
            name=name,
            help=help_text,
        )


_mount(_RiskCommands, "risk", "Train and evaluate the risk service's fraud model.")
_mount(
    _KeyCommands,
    "keys",
    "The identity service's keys: token signing keys and personal-data keys "
    "(default directories: .bankmesh/identity-keys, .bankmesh/identity-data-keys).",
)
_mount(_UserCommands, "users", "The identity service's staff users.")
app.add_typer(audit_app, name="audit")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
