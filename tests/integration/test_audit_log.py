"""The audit log in PostgreSQL: chained by the database, append-only, and tampering is named.

Each tampering test rewrites a fresh chain the way a superuser could (with the
guard triggers off) and asserts that `verify` names exactly the first bad row.
The account service's own events (transfers, account changes, refusals) are
checked through the real ledger.
"""

from __future__ import annotations

import asyncio
import secrets
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path

import grpc
import grpc.aio
import psycopg
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from psycopg import sql
from sqlalchemy.ext.asyncio import AsyncEngine

from bankmesh.account.v1 import account_service_pb2 as svc
from bankmesh.account.v1.account_service_pb2_grpc import AccountServiceStub
from mesh import assertions
from mesh.context import EndUser, end_user
from mesh.runtime.postgres import with_database
from services.account.app import build_account_server
from services.account.domain.errors import AccountNotFound
from services.account.domain.model import AccountType, NewTransfer, TransferKind, Viewer
from services.account.service_layer.ledger import Ledger, OpenAccount
from services.common.audit import checkpoints, schema
from services.common.audit.chain import Problem, Report
from services.common.audit.events import AuditEvent, Outcome
from services.common.audit.reader import verify_database
from services.common.audit.service import ServiceAudit
from services.common.database import create_engine
from services.common.storage import SqlTransaction, WriteConflict
from tests.support.mesh import TestMesh

pytestmark = pytest.mark.integration


@pytest.fixture
def chain_url(postgres_server_url: str) -> Iterator[str]:
    """A database with nothing but an audit log, and the app role's grants on it."""
    name = f"bankmesh_test_audit_{secrets.token_hex(4)}"
    with psycopg.connect(postgres_server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = with_database(postgres_server_url, name)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(schema.AUDIT_LOG_SQL)
        conn.execute("CREATE SCHEMA demo; CREATE TABLE demo.things (id int PRIMARY KEY)")
        conn.execute(schema.app_role_grants_sql(["demo"]))
    yield url
    with psycopg.connect(postgres_server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
async def chain_engine(chain_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(chain_url, pool_size=2)
    yield engine
    await engine.dispose()


class DemoTransaction(SqlTransaction):
    database = "demo"


def event(n: int, **details: object) -> AuditEvent:
    return AuditEvent(
        "demo.thing_made",
        Outcome.SUCCESS,
        datetime.now(UTC),
        f"user:{n}",
        f"thing-{n}",
        f"request-{n}",
        {"n": n, **details},
    )


async def write(engine: AsyncEngine, *events: AuditEvent) -> None:
    async with DemoTransaction(engine) as tx:
        tx.audit.extend(events)
        await tx.commit()


def tamper(url: str, *statements: str) -> None:
    """As a superuser would: guard triggers off for this session only."""
    with psycopg.connect(url) as conn:
        conn.execute("SET session_replication_role = replica")
        for statement in statements:
            conn.execute(statement)


def first_bad(report: Report) -> tuple[int, Problem]:
    assert report.first is not None, "the chain verified"
    return report.first.seq, report.first.problem


# -- the database chains, Python agrees ------------------------------------------------------


async def test_python_recomputes_every_hash_the_database_chained(
    chain_engine: AsyncEngine, chain_url: str
) -> None:
    """Unicode, nesting, numbers, odd microseconds and time zones: the verifier agrees."""
    tricky = AuditEvent(
        "demo.tricky",
        Outcome.FAILURE,
        datetime(2026, 3, 29, 1, 30, 0, 999_999, tzinfo=UTC).astimezone(),
        "user:é\u2603",
        'ünïcode "quoted"',
        "req\n1",
        {"z": [1, 2.5, None, True], "a": {"nested": "\u00e9\u2603\\"}, "big": 2**60, "e": 1e-7},
    )
    await write(chain_engine, event(1), tricky, event(3))
    report = verify_database(chain_url, "demo")
    assert report.intact, report.findings
    assert (report.rows, report.head_seq) == (3, 3)


async def test_a_rolled_back_transaction_leaves_no_audit_row_and_no_gap(
    chain_engine: AsyncEngine, chain_url: str
) -> None:
    """The event goes with its change: rolled back together; the next event takes seq 2."""
    await write(chain_engine, event(1))

    async def fails_before_commit() -> None:
        async with DemoTransaction(chain_engine) as tx:
            await tx.connection.exec_driver_sql("INSERT INTO demo.things VALUES (1)")
            tx.audit.add(event(2))
            raise RuntimeError("the business change failed before commit")

    async def fails_in_the_database() -> None:
        async with DemoTransaction(chain_engine) as tx:
            await tx.connection.exec_driver_sql("INSERT INTO demo.things VALUES (5), (5)")
            tx.audit.add(event(3))
            await tx.commit()

    with pytest.raises(RuntimeError):
        await fails_before_commit()
    with pytest.raises(WriteConflict):
        await fails_in_the_database()
    await write(chain_engine, event(4))
    with psycopg.connect(chain_url) as conn:
        subjects = conn.execute("SELECT seq, subject FROM audit.events ORDER BY seq").fetchall()
        things = conn.execute("SELECT count(*) FROM demo.things").fetchone()
    assert subjects == [(1, "thing-1"), (2, "thing-4")]
    assert things == (0,)
    assert verify_database(chain_url, "demo").intact


async def test_concurrent_writers_make_one_gapless_valid_chain(
    chain_engine: AsyncEngine, chain_url: str
) -> None:
    """40 transactions of 5 events, racing on a small pool: seq 1..200, all linked."""

    async def writer(w: int) -> None:
        await write(chain_engine, *(event(w * 10 + i) for i in range(5)))

    await asyncio.gather(*(writer(w) for w in range(40)))
    report = verify_database(chain_url, "demo")
    assert report.intact and report.rows == report.head_seq == 200


async def test_the_application_cannot_forge_the_linkage(chain_url: str) -> None:
    """seq, prev_hash and hash given by an INSERT are replaced by the trigger's."""
    with psycopg.connect(chain_url) as conn:
        conn.execute(
            "INSERT INTO audit.events (seq, service, actor, action, outcome, prev_hash, hash) "
            "VALUES (99, 'demo', 'me', 'x', 'success', '\\x00', '\\x00')"
        )
        (seq, digest) = conn.execute("SELECT seq, length(hash) FROM audit.events").fetchone()  # type: ignore[misc]
    assert (seq, digest) == (1, 32)
    assert verify_database(chain_url, "demo").intact


# -- append-only ---------------------------------------------------------------------------


async def test_the_app_role_may_insert_but_never_rewrite(
    chain_engine: AsyncEngine, chain_url: str
) -> None:
    """As bankmesh_app: INSERT works; UPDATE, DELETE and TRUNCATE are permission denied."""
    await write(chain_engine, event(1))
    for statement in (
        "UPDATE audit.events SET actor = 'x'",
        "DELETE FROM audit.events",
        "TRUNCATE audit.events",
        "ALTER TABLE audit.events DISABLE TRIGGER USER",
    ):
        with psycopg.connect(chain_url) as conn:
            conn.execute(f"SET ROLE {schema.APP_ROLE}")
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)
    with psycopg.connect(chain_url) as conn:
        conn.execute(f"SET ROLE {schema.APP_ROLE}")
        conn.execute(
            "INSERT INTO audit.events (service, actor, action, outcome) "
            "VALUES ('demo', 'me', 'x', 'success')"
        )
        conn.execute("INSERT INTO demo.things VALUES (7)")  # its own tables: as usual
    assert verify_database(chain_url, "demo").rows == 2


async def test_even_a_superuser_meets_the_guard_triggers(
    chain_engine: AsyncEngine, chain_url: str
) -> None:
    """UPDATE, DELETE and TRUNCATE are refused unless the triggers are switched off."""
    await write(chain_engine, event(1))
    for statement in (
        "UPDATE audit.events SET actor = 'x'",
        "DELETE FROM audit.events",
        "TRUNCATE audit.events",
    ):
        with (
            psycopg.connect(chain_url) as conn,
            pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"),
        ):
            conn.execute(statement)


# -- tampering, as a superuser would -----------------------------------------------------------


async def test_an_updated_amount_is_named_as_its_row(
    chain_engine: AsyncEngine, chain_url: str
) -> None:
    await write(chain_engine, *(event(n, amount=100) for n in range(1, 11)))
    tamper(
        chain_url, "UPDATE audit.events SET details = details || '{\"amount\": 1}' WHERE seq = 4"
    )
    assert first_bad(verify_database(chain_url, "demo")) == (4, Problem.ALTERED)


async def test_an_updated_actor_is_named_as_its_row(
    chain_engine: AsyncEngine, chain_url: str
) -> None:
    await write(chain_engine, *(event(n) for n in range(1, 11)))
    tamper(chain_url, "UPDATE audit.events SET actor = 'user:someone-else' WHERE seq = 7")
    assert first_bad(verify_database(chain_url, "demo")) == (7, Problem.ALTERED)


async def test_a_deleted_middle_row_is_named(chain_engine: AsyncEngine, chain_url: str) -> None:
    await write(chain_engine, *(event(n) for n in range(1, 11)))
    tamper(chain_url, "DELETE FROM audit.events WHERE seq = 5")
    report = verify_database(chain_url, "demo")
    assert first_bad(report) == (5, Problem.DELETED)
    assert "row 5 deleted" in report.findings[0].message


async def test_two_swapped_rows_are_named_as_reordered(
    chain_engine: AsyncEngine, chain_url: str
) -> None:
    await write(chain_engine, *(event(n) for n in range(1, 11)))
    tamper(
        chain_url,
        "UPDATE audit.events SET seq = -1 WHERE seq = 3",
        "UPDATE audit.events SET seq = 3 WHERE seq = 8",
        "UPDATE audit.events SET seq = 8 WHERE seq = -1",
    )
    assert first_bad(verify_database(chain_url, "demo")) == (3, Problem.REORDERED)


async def test_a_deleted_tail_is_caught_by_the_signed_checkpoint(
    chain_engine: AsyncEngine, chain_url: str, tmp_path: Path
) -> None:
    """Deleting the newest rows leaves a consistent chain, but shorter than one signed."""
    key = Ed25519PrivateKey.generate()
    public, file = tmp_path / "demo.pub", tmp_path / "demo.jsonl"
    public.write_bytes(checkpoints._public_pem(key.public_key()))
    await write(chain_engine, *(event(n) for n in range(1, 11)))
    with psycopg.connect(chain_url) as conn:
        (seq, digest) = conn.execute(  # type: ignore[misc]
            "SELECT seq, hash FROM audit.events ORDER BY seq DESC LIMIT 1"
        ).fetchone()
    checkpoints.append(file, checkpoints.sign(key, "demo", seq, bytes(digest)))
    assert verify_database(chain_url, "demo", file, public).intact
    tamper(chain_url, "DELETE FROM audit.events WHERE seq > 8")
    assert verify_database(chain_url, "demo").intact  # without checkpoints: undetectable
    assert first_bad(verify_database(chain_url, "demo", file, public)) == (9, Problem.TRUNCATED)


async def test_a_chain_rehashed_after_a_forgery_fails_its_checkpoint(
    chain_engine: AsyncEngine, chain_url: str, tmp_path: Path
) -> None:
    """A superuser who re-runs the trigger's hashing over every row still cannot match the key."""
    key = Ed25519PrivateKey.generate()
    public, file = tmp_path / "demo.pub", tmp_path / "demo.jsonl"
    public.write_bytes(checkpoints._public_pem(key.public_key()))
    await write(chain_engine, *(event(n) for n in range(1, 7)))
    with psycopg.connect(chain_url) as conn:
        (digest,) = conn.execute("SELECT hash FROM audit.events WHERE seq = 6").fetchone()  # type: ignore[misc]
    checkpoints.append(file, checkpoints.sign(key, "demo", 6, bytes(digest)))
    rehash = """
        UPDATE audit.events SET prev_hash = p.hash FROM audit.events p
         WHERE p.seq = audit.events.seq - 1 AND audit.events.seq = {n};
        UPDATE audit.events SET hash = sha256(convert_to(audit.canonical(seq, occurred_at,
            service, actor, action, subject, outcome, source, details, prev_hash), 'UTF8'))
         WHERE seq = {n};
    """
    tamper(
        chain_url,
        "UPDATE audit.events SET actor = 'user:mallory' WHERE seq = 2",
        *(rehash.format(n=n) for n in range(2, 7)),
    )
    assert verify_database(chain_url, "demo").intact  # internally consistent again
    assert first_bad(verify_database(chain_url, "demo", file, public)) == (1, Problem.MISMATCH)


# -- the account service's events -------------------------------------------------------------


def audit_rows(url: str, subject: str) -> list[tuple[str, str, str]]:
    with psycopg.connect(url) as conn:
        return [
            (action, outcome, actor)
            for action, outcome, actor in conn.execute(
                "SELECT action, outcome, actor FROM audit.events WHERE subject = %s ORDER BY seq",
                (subject,),
            )
        ]


async def test_the_ledger_audits_transfers_account_changes_and_refused_access(
    ledger: Ledger, ledger_engine: AsyncEngine, ledger_database_url: str
) -> None:
    """Opened, funded, held, posted, frozen, peeked at by another customer: all in the chain."""
    bank, _ = await ledger.open_account(OpenAccount("EUR", AccountType.SETTLEMENT))
    alice, _ = await ledger.open_account(OpenAccount("EUR", AccountType.CUSTOMER, "alice"))
    deposit = NewTransfer(uuid.uuid4(), TransferKind.SINGLE_PHASE, bank.id, alice.id, 500, "EUR")
    hold = NewTransfer(uuid.uuid4(), TransferKind.PENDING, alice.id, bank.id, 200, "EUR")
    post = NewTransfer(uuid.uuid4(), TransferKind.POST_PENDING, None, None, None, None, hold.id)
    for request in (deposit, hold, post):
        await ledger.create_transfer(request)
    await ledger.freeze(alice.id)
    with pytest.raises(AccountNotFound):
        await ledger.get_account(alice.id, Viewer(customer_id="bob"))

    assert audit_rows(ledger_database_url, str(alice.id)) == [
        ("account.opened", "success", "system"),
        ("account.frozen", "success", "system"),
        ("account.access", "denied", "system"),
    ]
    assert [audit_rows(ledger_database_url, str(t.id))[0][0] for t in (deposit, hold, post)] == [
        "transfer.single_phase",
        "transfer.pending",
        "transfer.post_pending",
    ]
    assert verify_database(ledger_database_url, "account").intact


async def test_a_transfer_names_the_person_who_asked(
    ledger: Ledger, ledger_database_url: str
) -> None:
    """Who asked travels with the request into the group-committed batch."""
    from services.common.audit.events import Origin

    bank, _ = await ledger.open_account(OpenAccount("EUR", AccountType.SETTLEMENT))
    alice, _ = await ledger.open_account(OpenAccount("EUR", AccountType.CUSTOMER, "alice"))
    origin = Origin("user:42", "request-abc", "spiffe://bankmesh.local/svc/payment")
    transfer = NewTransfer(
        uuid.uuid4(), TransferKind.SINGLE_PHASE, bank.id, alice.id, 5, "EUR", requested_by=origin
    )
    await ledger.create_transfer(transfer)
    with psycopg.connect(ledger_database_url) as conn:
        row = conn.execute(
            "SELECT actor, source, details->>'via', (details->>'amount')::int "
            "FROM audit.events WHERE subject = %s",
            (str(transfer.id),),
        ).fetchone()
    assert row == ("user:42", "request-abc", "spiffe://bankmesh.local/svc/payment", 5)


async def test_a_customer_reaching_for_another_account_is_audited_as_that_customer(
    ledger: Ledger, ledger_database_url: str
) -> None:
    """The end user of the call is the actor of the denial."""
    other, _ = await ledger.open_account(OpenAccount("EUR", AccountType.CUSTOMER, "carol"))
    token = end_user.set(EndUser("u-bob", "bob", frozenset({"customer"})))
    try:
        with pytest.raises(AccountNotFound):
            await ledger.get_account(other.id, Viewer(customer_id="bob"))
    finally:
        end_user.reset(token)
    assert audit_rows(ledger_database_url, str(other.id))[-1] == (
        "account.access",
        "denied",
        "user:u-bob",
    )


# -- refusals of the mesh policy -------------------------------------------------------------


async def test_calls_the_mesh_refused_are_audited_by_the_service_that_refused_them(
    ledger: Ledger, ledger_engine: AsyncEngine, ledger_database_url: str, tmp_path: Path
) -> None:
    """Over mTLS: risk asking for a transfer (PERMISSION_DENIED, `rpc.denied`), and a call
    carrying a forged end-user assertion (UNAUTHENTICATED, `rpc.unauthenticated`)."""
    mesh = TestMesh(tmp_path / "pki")
    audit = ServiceAudit(ledger_engine, "account", environ={})
    server, port, _ = build_account_server(ledger, security=audit.secure(mesh.security("account")))
    await server.start()
    try:
        channel = mesh.channel("risk", "account", port)
        stub = AccountServiceStub(channel)
        request = svc.GetTransferRequest(transfer_id=str(uuid.uuid4()))
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.GetTransfer(request, metadata=[("x-request-id", "denied-1")])
        assert refused.value.code() is grpc.StatusCode.PERMISSION_DENIED
        forged = [("x-request-id", "forged-1"), (assertions.HEADER, "not.a.token")]
        with pytest.raises(grpc.aio.AioRpcError) as unauthenticated:
            await stub.GetTransfer(request, metadata=forged)
        assert unauthenticated.value.code() is grpc.StatusCode.UNAUTHENTICATED
        await channel.close(None)
        await audit.writer.flush()
    finally:
        await server.stop(grace=None)
    with psycopg.connect(ledger_database_url) as conn:
        rows = conn.execute(
            "SELECT action, actor, outcome, source FROM audit.events "
            "WHERE subject = %s AND source IN ('denied-1', 'forged-1') ORDER BY seq",
            ("/bankmesh.account.v1.AccountService/GetTransfer",),
        ).fetchall()
    assert [(action, outcome, source) for action, _, outcome, source in rows] == [
        ("rpc.denied", "denied", "denied-1"),
        ("rpc.unauthenticated", "denied", "forged-1"),
    ]
    assert all("risk" in actor for _, actor, _, _ in rows)
