"""Customers who sign in at the edge: the setup of the edge scenario.

The edge pays only from the signed-in customer's own accounts, so its
scenario needs real customers rather than the operator: each one registered
with identity (``CreateCustomer``, as the operator over mTLS, the way
``bankmesh demo`` does), given a EUR account on the ledger in their customer
id and funded from the settlement account, then signed in at the edge
(``POST /v1/auth/login``) for an access token.

This runs just before the edge scenario is measured, not with the other
setup: access tokens live 15 minutes, longer than a quick run but not a full
one. Registering and signing in hash a password with argon2id (about 50 ms
and 64 MiB each in identity), so it goes one or two at a time.
"""

from __future__ import annotations

import asyncio
import secrets
import ssl
import uuid
from collections.abc import Awaitable, Callable
from typing import TypeVar

import grpc
import grpc.aio
import httpx

from bankmesh.account.v1 import account_pb2, account_service_pb2, account_service_pb2_grpc
from bankmesh.common.v1 import money_pb2
from bankmesh.identity.v1 import identity_service_pb2, identity_service_pb2_grpc
from bench.mesh import BenchError
from bench.workloads import CURRENCY, EdgeCustomer

# Not a secret: bench customers live in scratch databases (or are named
# bench-<run>-...), and their tokens expire with the run.
PASSWORD = "bench-customer-password"  # noqa: S105
FUNDING_MINOR_UNITS = 1_000_000_00
# A shared machine's PostgreSQL runs out of connection slots now and then;
# the services then answer UNAVAILABLE ("nothing was changed"), safe to retry.
ATTEMPTS = 10
RETRY_AFTER_SECONDS = 1.0
# Sign-ups one at a time: identity has answered concurrent CreateCustomer
# calls of a fresh database with UNAVAILABLE. Sign-ins two at a time.
SIGN_IN_CONCURRENCY = 2

T = TypeVar("T")


async def set_up_edge_customers(
    identity: grpc.aio.Channel,
    account: grpc.aio.Channel,
    settlement: str,
    base_url: str,
    ca: str,
    count: int,
) -> tuple[EdgeCustomer, ...]:
    """Register, fund and sign in ``count`` customers; their tokens and accounts."""
    run = secrets.token_hex(4)
    people = identity_service_pb2_grpc.IdentityServiceStub(identity)
    ledger = account_service_pb2_grpc.AccountServiceStub(account)
    sign_up, sign_in = asyncio.Semaphore(1), asyncio.Semaphore(SIGN_IN_CONCURRENCY)
    tls = ssl.create_default_context(cafile=ca)
    async with httpx.AsyncClient(base_url=base_url, verify=tls, timeout=60) as edge:

        async def one(n: int) -> EdgeCustomer:
            email = f"bench-{run}-{n}@example.com"
            async with sign_up:
                created = await _retrying(
                    lambda: people.CreateCustomer(
                        identity_service_pb2.CreateCustomerRequest(
                            full_name=f"Bench Customer {n}",
                            email=email,
                            phone_number=f"+4930{int(run, 16) % 10**6:06d}{n:04d}",
                            national_id=f"BENCH{run}{n:05d}",
                            password=PASSWORD,
                        ),
                        timeout=60,
                    )
                )
            async with sign_in:
                for _ in range(ATTEMPTS):
                    signed_in = await edge.post(
                        "/v1/auth/login", json={"email": email, "password": PASSWORD}
                    )
                    if signed_in.status_code != 503:
                        break
                    await asyncio.sleep(RETRY_AFTER_SECONDS)
            if signed_in.status_code != 200:
                raise BenchError(
                    f"{email} could not sign in at the edge: HTTP {signed_in.status_code} "
                    f"{signed_in.text[:200]}"
                )
            # An id of our own, so that a retried open is the same account.
            account_id = str(uuid.uuid4())
            await _retrying(
                lambda: ledger.OpenAccount(
                    account_service_pb2.OpenAccountRequest(
                        account_id=account_id,
                        customer_id=created.customer.customer_id,
                        currency_code=CURRENCY,
                        type=account_pb2.ACCOUNT_TYPE_CUSTOMER,
                    ),
                    timeout=30,
                )
            )
            return EdgeCustomer(token=signed_in.json()["tokens"]["accessToken"], account=account_id)

        try:
            customers = await asyncio.gather(*(one(n) for n in range(count)))
            # Transfer ids of our own, so that a retried batch is the same batch.
            funding = account_service_pb2.CreateTransfersRequest(
                transfers=[
                    account_pb2.NewTransfer(
                        transfer_id=str(uuid.uuid4()),
                        debit_account_id=settlement,
                        credit_account_id=customer.account,
                        amount=money_pb2.Money(
                            minor_units=FUNDING_MINOR_UNITS, currency_code=CURRENCY
                        ),
                        kind=account_pb2.TRANSFER_KIND_SINGLE_PHASE,
                    )
                    for customer in customers
                ]
            )
            funded = await _retrying(lambda: ledger.CreateTransfers(funding, timeout=60))
        except grpc.aio.AioRpcError as exc:
            raise BenchError(
                f"setting up the edge's customers failed: {exc.code().name}: {exc.details()}"
            ) from exc
        except httpx.HTTPError as exc:
            raise BenchError(f"signing in at the edge failed: {exc}") from exc
    done = {
        account_service_pb2.CreateTransferResult.OUTCOME_CREATED,
        account_service_pb2.CreateTransferResult.OUTCOME_EXISTS,
    }
    refused = [r for r in funded.results if r.outcome not in done]
    if refused:
        raise BenchError(f"funding the edge's customers refused {len(refused)}: {refused[0]}")
    return tuple(customers)


async def _retrying(call: Callable[[], Awaitable[T]]) -> T:
    """``call()``, again after a pause while it answers UNAVAILABLE (nothing was changed)."""
    for _ in range(ATTEMPTS - 1):
        try:
            return await call()
        except grpc.aio.AioRpcError as exc:
            if exc.code() != grpc.StatusCode.UNAVAILABLE:
                raise
        await asyncio.sleep(RETRY_AFTER_SECONDS)
    return await call()
