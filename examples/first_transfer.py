"""Open two accounts on a running mesh and move money between them.

Start the mesh first (`make run`), then in another terminal:

    .venv/bin/python examples/first_transfer.py

It finds the account service in .bankmesh/endpoints.json (or the data
directory named by BANKMESH_DATA_DIR) and talks to it over mutual TLS as the
operator, with the generated stubs.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import grpc
from grpc_status import rpc_status

from bankmesh.account.v1 import account_pb2, account_service_pb2, account_service_pb2_grpc
from bankmesh.common.v1 import money_pb2
from mesh.errors import error_info
from mesh.operator import operator_channel
from services.common.money import Money


def eur(cents: int) -> money_pb2.Money:
    return money_pb2.Money(minor_units=cents, currency_code="EUR")


def main() -> None:
    data_dir = Path(os.environ.get("BANKMESH_DATA_DIR", ".bankmesh"))
    with operator_channel("account", data_dir) as channel:
        ledger = account_service_pb2_grpc.AccountServiceStub(channel)

        def open_account(kind: int, customer: str = "") -> str:
            request = account_service_pb2.OpenAccountRequest(
                customer_id=customer,
                currency_code="EUR",
                type=kind,  # type: ignore[arg-type]
            )
            return ledger.OpenAccount(request).account.account_id

        def transfer(debit: str, credit: str, cents: int) -> None:
            ledger.CreateTransfer(
                account_service_pb2.CreateTransferRequest(
                    transfer=account_pb2.NewTransfer(
                        transfer_id=str(uuid.uuid4()),
                        debit_account_id=debit,
                        credit_account_id=credit,
                        amount=eur(cents),
                        kind=account_pb2.TRANSFER_KIND_SINGLE_PHASE,
                    )
                )
            )

        bank = open_account(account_pb2.ACCOUNT_TYPE_SETTLEMENT)
        alice = open_account(account_pb2.ACCOUNT_TYPE_CUSTOMER, "alice")
        bob = open_account(account_pb2.ACCOUNT_TYPE_CUSTOMER, "bob")
        transfer(bank, alice, 100_00)  # alice deposits EUR 100.00
        transfer(alice, bob, 25_50)  # and pays bob EUR 25.50

        for name, account_id in (("alice", alice), ("bob", bob)):
            account = ledger.GetAccount(
                account_service_pb2.GetAccountRequest(account_id=account_id)
            ).account
            posted = account.balances.posted
            print(f"{name:6} {account_id}  {Money(posted.minor_units, posted.currency_code)}")

        try:
            transfer(bob, alice, 1_000_00)  # more than bob has
        except grpc.RpcError as refused:
            # The reason code rides in the google.rpc.Status trailer; branch on it, not on text.
            status = rpc_status.from_call(refused)  # type: ignore[arg-type]
            info = error_info(status) if status else None
            print(
                f"refused: {info.reason if info else refused}: {status.message if status else ''}"
            )


if __name__ == "__main__":
    main()
