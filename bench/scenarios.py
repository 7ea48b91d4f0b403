"""The scenarios: what each measures, the setup it needs, the workload it runs.

Every gRPC scenario is measured at each of the profile's concurrency levels
with the same client processes. A scenario is *pluggable*: ``unavailable``
returns why it cannot run on this mesh (the edge, until ``bankmesh up``
starts one), and the run reports that instead of a number.

The ledger and payment scenarios share one setup: ``accounts`` customer
accounts (one customer each, ``bench-<run>-<n>``), funded from the mesh's EUR
settlement account with CreateTransfers batches so that no transfer or
payment of the run is short of money.
"""

from __future__ import annotations

import asyncio
import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import grpc.aio

import mesh as mesh_package
from bankmesh.account.v1 import account_pb2, account_service_pb2, account_service_pb2_grpc
from bankmesh.common.v1 import money_pb2
from bench import echo
from bench.customers import set_up_edge_customers
from bench.mesh import BenchError, RunningMesh
from bench.workloads import (
    CURRENCY,
    EchoWorkload,
    EdgeCustomer,
    EdgePaymentWorkload,
    GrpcTarget,
    PaymentWorkload,
    RiskWorkload,
    TransferWorkload,
    Workload,
)
from mesh.operator import settlement_account_id

# Per account: far more than a run can spend (amounts are at most EUR 80).
FUNDING_MINOR_UNITS = 1_000_000_00
FUNDING_BATCH = 1_000
SETUP_CONCURRENCY = 32
# Transfers per request in the ledger_batch scenario.
LEDGER_BATCH = 100


@dataclass(frozen=True)
class Context:
    """What the scenarios run against: the mesh and the accounts set up on it."""

    mesh: RunningMesh
    accounts: tuple[str, ...] = ()
    customers: tuple[str, ...] = ()
    settlement: str = ""
    # Customers signed in at the edge for its scenario: one per request in
    # flight at the highest level, so no two tasks need share a customer.
    edge_customers: int = 64

    def target(self, service: str) -> GrpcTarget:
        credentials = self.mesh.credentials
        assert credentials is not None
        addresses = self.mesh.addresses.get(service)
        if not addresses:
            raise BenchError(f"the mesh runs no {service} service")
        return GrpcTarget(
            service=service,
            addresses=tuple(addresses),
            ca=credentials.ca,
            cert=credentials.cert,
            key=credentials.key,
        )


@dataclass(frozen=True)
class Scenario:
    name: str
    measures: str
    workload: Callable[[Context], Workload]
    needs_accounts: bool = False
    # Transfers per request, for a scenario that sends batches.
    transfers_per_request: int = 1
    unavailable: Callable[[Context], str | None] = lambda context: None


def _edge_unavailable(context: Context) -> str | None:
    edge_dir = Path(next(iter(mesh_package.__path__))) / "edge"
    if not edge_dir.is_dir():
        return "not available: there is no mesh/edge in this checkout"
    if "edge" not in context.mesh.addresses:
        return "not available: mesh/edge exists but `bankmesh up` starts no edge process yet"
    if "identity" not in context.mesh.addresses:
        return "not available: the mesh runs no identity service to sign customers in"
    return None


def _edge_workload(context: Context) -> Workload:
    credentials = context.mesh.credentials
    assert credentials is not None
    base_url = f"https://{context.mesh.addresses['edge'][0]}"
    customers = asyncio.run(_edge_customers(context, base_url, credentials.ca))
    return EdgePaymentWorkload(base_url=base_url, ca=credentials.ca, customers=customers)


async def _edge_customers(context: Context, base_url: str, ca: str) -> tuple[EdgeCustomer, ...]:
    identity, account = context.target("identity").open(), context.target("account").open()
    try:
        return await set_up_edge_customers(
            identity, account, context.settlement, base_url, ca, context.edge_customers
        )
    finally:
        await identity.close(grace=None)
        await account.close(grace=None)


SCENARIOS: dict[str, Scenario] = {
    scenario.name: scenario
    for scenario in (
        Scenario(
            "echo",
            "a trivial grpc.aio unary service (bytes echoed) over the same mTLS: the floor",
            lambda c: EchoWorkload(c.target(echo.SERVICE)),
        ),
        Scenario(
            "ledger",
            "AccountService/CreateTransfer between random pairs of the funded accounts",
            lambda c: TransferWorkload(c.target("account"), accounts=c.accounts),
            needs_accounts=True,
        ),
        Scenario(
            "ledger_batch",
            f"AccountService/CreateTransfers, {LEDGER_BATCH} random pairs per request: "
            "a client that batches",
            lambda c: TransferWorkload(
                c.target("account"), accounts=c.accounts, batch=LEDGER_BATCH
            ),
            needs_accounts=True,
            transfers_per_request=LEDGER_BATCH,
        ),
        Scenario(
            "hot",
            "CreateTransfer from a random account, every one crediting the settlement account",
            lambda c: TransferWorkload(
                c.target("account"), accounts=c.accounts, hot_account=c.settlement
            ),
            needs_accounts=True,
        ),
        Scenario(
            "payment",
            "PaymentService/CreatePayment end to end (payment -> risk -> account)",
            lambda c: PaymentWorkload(c.target("payment"), accounts=c.accounts),
            needs_accounts=True,
        ),
        Scenario(
            "edge",
            "the payment scenario through the edge: POST /v1/payments over HTTPS",
            _edge_workload,
            needs_accounts=True,
            unavailable=_edge_unavailable,
        ),
        Scenario(
            "risk",
            "RiskService/ScoreTransaction alone, for the same customers and payees",
            lambda c: RiskWorkload(c.target("risk"), accounts=c.accounts, customers=c.customers),
            needs_accounts=True,
        ),
    )
}
PGBENCH = "pgbench"
ALL = [*SCENARIOS, PGBENCH]


def set_up_accounts(mesh: RunningMesh, count: int, progress: Callable[[int, int], None]) -> Context:
    """Open ``count`` customer accounts and fund them; ``progress(done, total)`` as it goes."""
    return asyncio.run(_set_up(mesh, count, progress))


async def _set_up(mesh: RunningMesh, count: int, progress: Callable[[int, int], None]) -> Context:
    context = Context(mesh)
    channel = context.target("account").open()
    try:
        ledger = account_service_pb2_grpc.AccountServiceStub(channel)
        settlement = settlement_account_id(CURRENCY)
        await ledger.OpenAccount(
            account_service_pb2.OpenAccountRequest(
                account_id=settlement,
                currency_code=CURRENCY,
                type=account_pb2.ACCOUNT_TYPE_SETTLEMENT,
            ),
            timeout=30,
        )
        run = secrets.token_hex(4)
        customers = tuple(f"bench-{run}-{n}" for n in range(count))
        accounts: list[str] = [""] * count
        total = 2 * count  # opening, then funding
        done = 0
        queue: asyncio.Queue[int] = asyncio.Queue()
        for n in range(count):
            queue.put_nowait(n)

        async def opener() -> None:
            nonlocal done
            while not queue.empty():
                n = queue.get_nowait()
                response = await ledger.OpenAccount(
                    account_service_pb2.OpenAccountRequest(
                        customer_id=customers[n],
                        currency_code=CURRENCY,
                        type=account_pb2.ACCOUNT_TYPE_CUSTOMER,
                    ),
                    timeout=30,
                )
                accounts[n] = response.account.account_id
                done += 1
                if done % 100 == 0:
                    progress(done, total)

        await asyncio.gather(*(opener() for _ in range(min(SETUP_CONCURRENCY, count))))
        progress(done, total)
        for first in range(0, count, FUNDING_BATCH):
            batch = accounts[first : first + FUNDING_BATCH]
            response = await ledger.CreateTransfers(
                account_service_pb2.CreateTransfersRequest(
                    transfers=[
                        account_pb2.NewTransfer(
                            transfer_id=str(uuid.uuid4()),
                            debit_account_id=settlement,
                            credit_account_id=account,
                            amount=money_pb2.Money(
                                minor_units=FUNDING_MINOR_UNITS, currency_code=CURRENCY
                            ),
                            kind=account_pb2.TRANSFER_KIND_SINGLE_PHASE,
                        )
                        for account in batch
                    ]
                ),
                timeout=120,
            )
            refused = [
                r
                for r in response.results
                if r.outcome != account_service_pb2.CreateTransferResult.OUTCOME_CREATED
            ]
            if refused:
                raise BenchError(f"funding refused {len(refused)} transfers: {refused[0]}")
            done += len(batch)
            progress(done, total)
        return Context(mesh, tuple(accounts), customers, settlement)
    except grpc.aio.AioRpcError as exc:
        raise BenchError(f"setting up accounts failed: {exc.code().name}: {exc.details()}") from exc
    finally:
        await channel.close(grace=None)
