"""The operator's `bankmesh` commands: amounts, accounts, deposits and payments.

* Amount parsing is pure and tested directly.
* `accounts` and `deposit` run against a real account service (its gRPC
  server with the mesh's security, port 0) over mutual TLS as the operator,
  found through an endpoints.json written into a temporary data directory,
  exactly as `bankmesh up` would write it. The server runs on an event loop
  of its own in a thread: the CLI's synchronous gRPC calls block the thread
  that makes them, so the server cannot share the test's loop.
* `pay` is checked for its arguments and its error rendering without a
  payment service, then end to end: `launch` (what `bankmesh up` runs) in a
  child process with the real account, identity, risk, two payment replicas
  and the edge, on an embedded PostgreSQL and Redis of their own under a
  temporary data directory, so the test touches no shared database. `status`
  and `demo` run against that mesh too.
* `risk`, `keys` and `users` are the services' own CLIs, mounted lazily.
"""

from __future__ import annotations

import asyncio
import json
import queue
import re
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mesh.cli import app
from mesh.operator import AmountError, parse_amount, settlement_account_id
from mesh.server import ServerSecurity
from services.account.adapters.unit_of_work import SqlUnitOfWork
from services.account.app import build_account_server
from services.account.service_layer.ledger import Ledger
from services.account.service_layer.unit_of_work import SystemClock
from services.common.database import create_engine
from tests.support.launch import launched as launch_mesh
from tests.support.mesh import TestMesh

pytestmark = pytest.mark.integration

UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def run(*args: str, data_dir: Path) -> tuple[int, str]:
    # Wide enough that rich does not wrap the ids and messages asserted on.
    result = CliRunner().invoke(app, [*args, "--data-dir", str(data_dir)], env={"COLUMNS": "250"})
    return result.exit_code, result.output


def table_rows(output: str) -> list[list[str]]:
    """The cells of each body row of the rich tables in ``output``."""
    return [
        [cell.strip() for cell in line.strip("│").split("│")]
        for line in output.splitlines()
        if line.startswith("│")
    ]


def customer() -> str:
    return f"cli-{uuid.uuid4().hex[:8]}"


def write_endpoints(data_dir: Path, services: dict[str, list[str]], mesh: TestMesh | None) -> None:
    credentials = {}
    if mesh is not None:
        operator = mesh.identity_dir("operator")
        credentials = {
            "ca": str(operator / "ca.pem"),
            "cert": str(operator / "cert.pem"),
            "key": str(operator / "key.pem"),
            "server_name_suffix": "bankmesh.local",
        }
    document = {"services": services, "credentials": credentials, "complete": True}
    (data_dir / "endpoints.json").write_text(json.dumps(document))


# --- amounts -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "currency", "minor_units"),
    [
        ("10.50", "EUR", 1050),
        ("10.5", "EUR", 1050),
        ("10", "EUR", 1000),
        ("0.01", "EUR", 1),
        ("10.500", "EUR", 1050),
        ("10", "JPY", 10),
        ("1.234", "KWD", 1234),
        (" 7.25 ", "USD", 725),
        ("92233720368547758.07", "EUR", 2**63 - 1),
    ],
)
def test_amounts_become_exact_minor_units_of_their_currency(
    text: str, currency: str, minor_units: int
) -> None:
    """Decimal strings scale by the currency's ISO 4217 exponent with no rounding at all."""
    assert parse_amount(text, currency) == minor_units


@pytest.mark.parametrize(
    ("text", "currency", "message"),
    [
        ("10.505", "EUR", "EUR amounts have at most 2 decimal places; 10.505 is not one"),
        ("10.5", "JPY", "JPY amounts have no decimal places"),
        ("1.2345", "KWD", "KWD amounts have at most 3 decimal places"),
        ("-1", "EUR", "the amount must be positive, got -1"),
        ("0", "EUR", "the amount must be more than zero"),
        ("0.00", "EUR", "the amount must be more than zero"),
        ("abc", "EUR", "'abc' is not an amount"),
        ("1e3", "EUR", "'1e3' is not an amount"),
        ("1,000.00", "EUR", "is not an amount"),
        ("+5", "EUR", "is not an amount"),
        ("NaN", "EUR", "is not an amount"),
        ("", "EUR", "is not an amount"),
        ("٣", "EUR", "is not an amount"),
        ("92233720368547758.08", "EUR", "more than the ledger can hold"),
        ("10", "EURO", "'EURO' is not an ISO 4217 currency code"),
    ],
)
def test_amounts_that_are_not_exact_positive_amounts_are_refused_with_a_reason(
    text: str, currency: str, message: str
) -> None:
    """Too many decimals, signs, zero, words, exponents and overflow each say what is wrong."""
    with pytest.raises(AmountError) as refused:
        parse_amount(text, currency)
    assert message in str(refused.value)


def test_the_settlement_account_of_a_currency_has_one_id_forever() -> None:
    """uuid5 of a fixed namespace: the same id for EUR in every run, another for USD."""
    assert settlement_account_id("EUR") == settlement_account_id("EUR")
    assert settlement_account_id("EUR") != settlement_account_id("USD")
    assert uuid.UUID(settlement_account_id("EUR")).version == 5


# --- against a real account service ----------------------------------------------


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestMesh:
    return TestMesh(tmp_path_factory.mktemp("pki"))


def _serve_account(
    database_url: str,
    security: ServerSecurity,
    started: queue.Queue[tuple[int, asyncio.AbstractEventLoop, asyncio.Event] | BaseException],
) -> None:
    async def serve() -> None:
        engine = create_engine(database_url, pool_size=5)
        try:
            ledger = Ledger(lambda: SqlUnitOfWork(engine), SystemClock())
            server, port, health = build_account_server(ledger, security=security)
            await server.start()
            await health.set_serving(True)
            stop = asyncio.Event()
            started.put((port, asyncio.get_running_loop(), stop))
            await stop.wait()
            await server.stop(grace=None)
        finally:
            await engine.dispose()

    try:
        asyncio.run(serve())
    except BaseException as exc:
        started.put(exc)


@pytest.fixture(scope="module")
def account_port(ledger_database_url: str, pki: TestMesh) -> Iterator[int]:
    """The account service with mTLS and the policy, on its own loop in a thread."""
    started: queue.Queue[tuple[int, asyncio.AbstractEventLoop, asyncio.Event] | BaseException]
    started = queue.Queue()
    thread = threading.Thread(
        target=_serve_account,
        args=(ledger_database_url, pki.security("account"), started),
        daemon=True,
    )
    thread.start()
    outcome = started.get(timeout=30)
    if isinstance(outcome, BaseException):
        raise outcome
    port, loop, stop = outcome
    yield port
    loop.call_soon_threadsafe(stop.set)
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory, pki: TestMesh, account_port: int) -> Path:
    """A data directory whose endpoints.json leads to the account service, as the operator."""
    directory = tmp_path_factory.mktemp("operator")
    write_endpoints(directory, {"account": [f"127.0.0.1:{account_port}"]}, pki)
    return directory


def open_account(data_dir: Path, owner: str, *options: str) -> str:
    code, output = run("accounts", "open", "--customer", owner, *options, data_dir=data_dir)
    assert code == 0, output
    return output.strip()


def deposit(data_dir: Path, account: str, amount: str, *options: str) -> str:
    code, output = run("deposit", account, amount, *options, data_dir=data_dir)
    assert code == 0, output
    return output


def test_accounts_open_prints_only_the_new_account_id(data_dir: Path) -> None:
    """The output is the id alone, so a script can capture it; the account exists."""
    code, output = run("accounts", "open", "--customer", customer(), data_dir=data_dir)
    assert code == 0, output
    assert UUID.fullmatch(output.strip()), output
    code, shown = run("accounts", "show", output.strip(), data_dir=data_dir)
    assert code == 0, shown


def test_accounts_list_shows_every_account_of_a_customer_with_exact_balances(
    data_dir: Path,
) -> None:
    """One row per account: id, currency, type, status, posted and available as Money formats them."""
    owner = customer()
    eur = open_account(data_dir, owner)
    jpy = open_account(data_dir, owner, "--currency", "jpy")
    kwd = open_account(data_dir, owner, "--currency", "KWD", "--type", "internal")
    deposit(data_dir, eur, "10.50")
    deposit(data_dir, jpy, "1050", "--currency", "JPY")
    deposit(data_dir, kwd, "1.234", "--currency", "KWD")

    code, output = run("accounts", "list", "--customer", owner, data_dir=data_dir)

    assert code == 0, output
    rows = {row[0]: row[1:] for row in table_rows(output)}
    assert rows == {
        eur: ["EUR", "customer", "active", "EUR 10.50", "EUR 10.50"],
        jpy: ["JPY", "customer", "active", "JPY 1050", "JPY 1050"],
        kwd: ["KWD", "internal", "active", "KWD 1.234", "KWD 1.234"],
    }


def test_accounts_list_for_a_customer_without_accounts_says_how_to_open_one(
    data_dir: Path,
) -> None:
    """No empty table: a sentence and the command that opens an account."""
    owner = customer()
    code, output = run("accounts", "list", "--customer", owner, data_dir=data_dir)
    assert code == 0, output
    assert f"customer '{owner}' has no accounts" in output
    assert f"bankmesh accounts open --customer {owner}" in output


def test_accounts_show_has_the_balances_and_the_latest_ten_entries_newest_first(
    data_dir: Path,
) -> None:
    """After twelve deposits of 1..12 EUR the panel shows 78.00 and the table 12.00 down to 3.00."""
    account = open_account(data_dir, customer())
    for euros in range(1, 13):
        deposit(data_dir, account, str(euros))

    code, output = run("accounts", "show", account, data_dir=data_dir)

    assert code == 0, output
    assert f"account {account}" in output
    assert re.search(r"posted\s+EUR 78\.00", output), output
    assert re.search(r"available\s+EUR 78\.00", output), output
    assert re.search(r"limits\s+no overdraft", output), output
    entries = [row for row in table_rows(output) if len(row) == 7]
    assert [row[4] for row in entries] == [f"EUR {n}.00" for n in range(12, 2, -1)]
    assert {(row[2], row[3]) for row in entries} == {("single_phase", "credit")}
    assert entries[0][6] == "EUR 78.00"


def test_deposits_come_from_one_settlement_account_per_currency(data_dir: Path) -> None:
    """Every EUR deposit debits the same settlement account, opened once with its fixed id."""
    settlement = settlement_account_id("EUR")
    first = deposit(data_dir, open_account(data_dir, customer()), "5")
    second = deposit(data_dir, open_account(data_dir, customer()), "7.25")
    assert f"{settlement} (settlement, EUR)" in first
    assert f"{settlement} (settlement, EUR)" in second
    assert re.search(r"available now\s+EUR 7\.25", second), second
    code, output = run("accounts", "show", settlement, data_dir=data_dir)
    assert code == 0, output
    assert re.search(r"type\s+settlement", output), output


def test_a_refused_call_shows_the_reason_the_message_and_a_hint_and_exits_1(
    data_dir: Path,
) -> None:
    """An unknown account is ACCOUNT_NOT_FOUND from the service, with what to do next."""
    missing = str(uuid.uuid4())
    code, output = run("accounts", "show", missing, data_dir=data_dir)
    assert code == 1
    assert f"error: ACCOUNT_NOT_FOUND: account {missing} does not exist" in output
    assert "hint: check the account id" in output


def test_a_deposit_in_another_currency_than_the_account_is_refused(data_dir: Path) -> None:
    """USD into a EUR account: CURRENCY_MISMATCH and a hint to pass the right --currency."""
    account = open_account(data_dir, customer())
    code, output = run("deposit", account, "5", "--currency", "USD", data_dir=data_dir)
    assert code == 1
    assert "error: CURRENCY_MISMATCH" in output
    assert "pass --currency with the accounts' currency" in output


def test_amounts_and_currencies_that_make_no_sense_are_usage_errors(data_dir: Path) -> None:
    """Exit 2 and the reason, before any call: too many decimals, an unknown currency."""
    account = str(uuid.uuid4())
    code, output = run("deposit", account, "10.505", data_dir=data_dir)
    assert code == 2
    assert "EUR amounts have at most 2 decimal places" in output
    code, output = run(
        "accounts", "open", "--customer", "x", "--currency", "EURO", data_dir=data_dir
    )
    assert code == 2
    assert "'EURO' is not an ISO 4217 currency code" in output


def test_operator_commands_without_a_running_mesh_say_how_to_start_one(tmp_path: Path) -> None:
    """No endpoints.json: exit 1 and `bankmesh up --data-dir ...` as the hint."""
    code, output = run("accounts", "list", "--customer", "x", data_dir=tmp_path)
    assert code == 1
    assert f"no running mesh in {tmp_path}" in output
    assert f"bankmesh up --data-dir {tmp_path}" in output


# --- pay ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--amount", "1e3"], "'1e3' is not an amount"),
        (["--amount", "3.001"], "EUR amounts have at most 2 decimal places"),
        (["--amount", "0"], "the amount must be more than zero"),
        (["--amount", "5", "--currency", "XXX"], "'XXX' is not an ISO 4217 currency code"),
        (["--amount", "5", "--ip", "300.1.1.1"], "'300.1.1.1' is not an IPv4 or IPv6 address"),
        (["--amount", "5", "--lat", "52.5"], "give both --lat and --lon, or neither"),
        (["--amount", "5", "--lat", "95", "--lon", "0"], "latitude is -90..90"),
    ],
)
def test_pay_refuses_arguments_that_make_no_sense_before_calling_anything(
    tmp_path: Path, arguments: list[str], message: str
) -> None:
    """A usage error (exit 2) with the reason; no mesh is even looked for."""
    accounts = ["--from", str(uuid.uuid4()), "--to", str(uuid.uuid4())]
    code, output = run("pay", *accounts, *arguments, data_dir=tmp_path)
    assert code == 2, output
    assert message in output


def test_pay_on_a_mesh_without_a_payment_service_says_what_runs(
    tmp_path: Path, pki: TestMesh
) -> None:
    """The error lists the services endpoints.json has, exit 1."""
    write_endpoints(tmp_path, {"account": ["127.0.0.1:1"]}, pki)
    accounts = ["--from", str(uuid.uuid4()), "--to", str(uuid.uuid4())]
    code, output = run("pay", *accounts, "--amount", "5", data_dir=tmp_path)
    assert code == 1
    assert "runs no payment service (it runs: account)" in output


def test_pay_that_gets_no_answer_shows_unavailable_and_the_key_to_retry_with(
    tmp_path: Path,
) -> None:
    """A payment service that is down: UNAVAILABLE, a hint, and --key KEY to retry safely."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    write_endpoints(tmp_path, {"payment": [f"127.0.0.1:{closed}"]}, None)
    key = f"retry-{uuid.uuid4()}"
    accounts = ["--from", str(uuid.uuid4()), "--to", str(uuid.uuid4())]
    code, output = run("pay", *accounts, "--amount", "5", "--key", key, data_dir=tmp_path)
    assert code == 1
    assert "error: UNAVAILABLE" in output
    assert "could not reach the payment service" in output
    # The terminal wraps long lines wherever the temporary path makes them break.
    assert f"to retry this payment safely: --key {key}" in " ".join(output.split())


# --- bankmesh risk --------------------------------------------------------------------

WITHOUT_RISK_CLI = """
import sys

class Absent:
    def find_spec(self, name, path=None, target=None):
        if name == "services.risk.cli":
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, Absent())
from typer.testing import CliRunner
from mesh.cli import app

result = CliRunner().invoke(app, ["--help"], env={"COLUMNS": "200"})
print("exit", result.exit_code, "fraud model" in result.output, "status" in result.output)
"""


def test_bankmesh_risk_runs_the_risk_services_own_commands() -> None:
    """`bankmesh risk --help` lists the risk CLI's train and evaluate."""
    result = CliRunner().invoke(app, ["risk", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "train" in result.output
    assert "evaluate" in result.output


def test_bankmesh_loads_the_risk_and_identity_clis_only_when_they_are_used() -> None:
    """Listing the commands shows `risk`, `keys` and `users` without importing either CLI."""
    probe = (
        "import sys; from typer.testing import CliRunner; from mesh.cli import app; "
        "out = CliRunner().invoke(app, ['--help'], env={'COLUMNS': '200'}).output; "
        "print('fraud model' in out, 'identity service' in out, 'staff users' in out, "
        "'sklearn' in sys.modules, 'services.identity.cli' in sys.modules)"
    )
    answer = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    )
    assert answer.stdout.split() == ["True", "True", "True", "False", "False"], answer.stderr


def test_bankmesh_keys_runs_the_identity_services_key_commands() -> None:
    """`bankmesh keys --help` lists identity's rotate, list, retire, rotate-data and rewrap-data."""
    result = CliRunner().invoke(app, ["keys", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    for command in ("rotate", "list", "retire", "rotate-data", "rewrap-data"):
        assert f" {command} " in result.output, command
    users = CliRunner().invoke(app, ["users", "--help"], env={"COLUMNS": "200"})
    assert users.exit_code == 0, users.output
    assert "add-staff" in users.output


def test_bankmesh_keys_rotate_creates_the_first_signing_key_in_the_directory_given(
    tmp_path: Path,
) -> None:
    """A first `keys rotate` makes one private key in a 0700 directory, through identity's code."""
    key_dir = tmp_path / "identity-keys"
    result = CliRunner().invoke(app, ["keys", "rotate", "--key-dir", str(key_dir)])
    assert result.exit_code == 0, result.output
    assert "created the first signing key" in result.output
    assert key_dir.stat().st_mode & 0o777 == 0o700
    [pem] = key_dir.glob("*.pem")
    assert pem.stat().st_mode & 0o777 == 0o600


def test_bankmesh_works_without_the_risk_cli() -> None:
    """A checkout without services/risk/cli.py has every other command and no `risk`."""
    answer = subprocess.run(
        [sys.executable, "-c", WITHOUT_RISK_CLI], capture_output=True, text=True, check=True
    )
    assert answer.stdout.split() == ["exit", "0", "False", "True"], answer.stderr


# --- the whole mesh, launched -------------------------------------------------------

DRIVER = """
import sys
from pathlib import Path

from mesh.runtime.launcher import DEFAULT_SERVICES, MeshConfig, launch, with_replicas

config = MeshConfig(
    data_dir=Path(sys.argv[1]),
    services=with_replicas(DEFAULT_SERVICES, ["payment=2"]),
    ready_timeout=60,
)
sys.exit(launch(config))
"""


@pytest.fixture(scope="module")
def launched(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The default services, payment twice, on embedded engines: the data dir, once all are up."""
    data_dir = tmp_path_factory.mktemp("whole-mesh")
    with launch_mesh(DRIVER, data_dir):
        yield data_dir


def payment_id(output: str) -> str:
    found = re.search(r"payment\s+(" + UUID.pattern + ")", output)
    assert found is not None, output
    return found.group(1)


def test_the_launched_mesh_lists_identity_and_the_edge_with_its_https_url(launched: Path) -> None:
    """endpoints.json has all five services, payment twice, and the edge's URL under urls."""
    endpoints = json.loads((launched / "endpoints.json").read_text())
    assert list(endpoints["services"]) == ["account", "identity", "risk", "payment", "edge"]
    assert len(endpoints["services"]["payment"]) == 2
    [edge] = endpoints["services"]["edge"]
    assert endpoints["urls"] == {"edge": [f"https://{edge}"]}
    for directory in ("identity-keys", "identity-data-keys"):
        assert (launched / directory).stat().st_mode & 0o777 == 0o700


def test_bankmesh_status_asks_the_edge_over_https_and_the_services_over_grpc(
    launched: Path,
) -> None:
    """Every process SERVING, the edge by its URL (GET /readyz, trusting the mesh CA); exit 0."""
    code, output = run("status", data_dir=launched)
    assert code == 0, output
    rows = {row[0]: row for row in table_rows(output)}
    assert set(rows) == {"account", "edge", "identity", "payment-1", "payment-2", "risk"}
    assert all(row[2] == "SERVING" for row in rows.values()), output
    assert rows["edge"][1].startswith("https://127.0.0.1:")


def test_bankmesh_demo_prints_the_edge_the_sign_ins_and_the_commands_and_can_run_again(
    launched: Path,
) -> None:
    """The panel has the URL, both sign-ins and account ids; five commands follow; a rerun agrees."""
    code, output = run("demo", data_dir=launched)
    assert code == 0, output
    endpoints = json.loads((launched / "endpoints.json").read_text())
    [url] = endpoints["urls"]["edge"]
    assert url in output
    assert "alice@example.com" in output
    assert "bob@example.com" in output
    assert "bankmesh-demo-only   demo only: it is public" in output
    accounts = re.findall(r"(?:Alice|Bob) Example\s+\S+\s+(" + UUID.pattern + ")", output)
    assert len(accounts) == 2, output
    assert re.search(r"Alice Example .* EUR 500\.00", output), output
    assert [line[:5] for line in output.splitlines() if line.startswith("# ")] == [
        f"# {n}. " for n in range(1, 6)
    ]
    assert output.count(f"curl -s --cacert {launched / 'pki' / 'edge' / 'ca.pem'} {url}/") == 6
    again_code, again = run("demo", data_dir=launched)
    assert again_code == 0, again
    assert re.findall(UUID, again) == re.findall(UUID, output)


def test_bankmesh_demo_without_a_mesh_says_how_to_start_one(tmp_path: Path) -> None:
    """No endpoints.json: exit 1 and `bankmesh up` as the hint, nothing else tried."""
    code, output = run("demo", data_dir=tmp_path)
    assert code == 1
    assert f"no running mesh in {tmp_path}" in output


def test_a_payment_through_the_launched_mesh_completes_and_moves_the_money(
    launched: Path,
) -> None:
    """Open, deposit and pay with the CLI: COMPLETED, approved by risk, balances exact."""
    alice = open_account(launched, "alice")
    bob = open_account(launched, "bob")
    deposit(launched, alice, "100")

    code, output = run(
        "pay",
        "--from",
        alice,
        "--to",
        bob,
        "--amount",
        "10.50",
        "--device",
        "device-alice-phone",
        "--ip",
        "192.0.2.10",
        "--lat",
        "52.52",
        "--lon",
        "13.40",
        data_dir=launched,
    )

    assert code == 0, output
    assert re.search(r"status\s+COMPLETED", output), output
    assert re.search(r"risk\s+approve", output), output
    assert re.search(r"amount\s+EUR 10\.50", output), output
    assert payment_id(output)
    for owner, account, balance in (("alice", alice, "EUR 89.50"), ("bob", bob, "EUR 10.50")):
        code, listed = run("accounts", "list", "--customer", owner, data_dir=launched)
        assert code == 0, listed
        rows = {row[0]: row for row in table_rows(listed)}
        assert rows[account][4] == balance


def test_paying_again_with_the_same_key_answers_the_same_payment(launched: Path) -> None:
    """--key makes a retry safe: the second call, on any replica, returns the first payment."""
    carol = open_account(launched, "carol")
    dave = open_account(launched, "dave")
    deposit(launched, carol, "20")
    key = f"retry-{uuid.uuid4()}"
    arguments = ["--from", carol, "--to", dave, "--amount", "5", "--key", key]
    outputs = [run("pay", *arguments, data_dir=launched) for _ in range(3)]
    assert all(code == 0 for code, _ in outputs), outputs
    assert len({payment_id(output) for _, output in outputs}) == 1
    code, listed = run("accounts", "list", "--customer", "carol", data_dir=launched)
    assert code == 0, listed
    assert table_rows(listed)[0][4] == "EUR 15.00"


def test_a_payment_that_does_not_go_through_exits_1_with_its_reason_and_a_hint(
    launched: Path,
) -> None:
    """More than the balance: the panel says FAILED, then an error and a hint; exit code 1."""
    erin = open_account(launched, "erin")
    frank = open_account(launched, "frank")
    deposit(launched, erin, "5")
    code, output = run("pay", "--from", erin, "--to", frank, "--amount", "50", data_dir=launched)
    assert code == 1, output
    assert re.search(r"status\s+FAILED", output), output
    assert "error: the payment is FAILED: INSUFFICIENT_FUNDS" in output
    assert "hint: the paying account has too little available" in output
