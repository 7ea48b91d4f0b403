import uuid

from services.account.domain.engine import Outcome
from services.account.domain.model import AccountType, NewTransfer, TransferKind
from services.account.service_layer.ledger import Ledger, OpenAccount


async def test_deposit_then_pay(ledger: Ledger) -> None:
    bank, _ = await ledger.open_account(OpenAccount("EUR", AccountType.SETTLEMENT))
    alice, _ = await ledger.open_account(OpenAccount("EUR", AccountType.CUSTOMER, "alice"))
    bob, _ = await ledger.open_account(OpenAccount("EUR", AccountType.CUSTOMER, "bob"))
    r = await ledger.create_transfers(
        [
            NewTransfer(uuid.uuid4(), TransferKind.SINGLE_PHASE, bank.id, alice.id, 10000, "EUR"),
            NewTransfer(uuid.uuid4(), TransferKind.SINGLE_PHASE, alice.id, bob.id, 2500, "EUR"),
            NewTransfer(uuid.uuid4(), TransferKind.SINGLE_PHASE, alice.id, bob.id, 9000, "EUR"),
        ]
    )
    assert [x.outcome for x in r] == [Outcome.CREATED, Outcome.CREATED, Outcome.FAILED]
    assert (await ledger.get_account(alice.id)).balances.posted == 7500
    assert (await ledger.get_account(bank.id)).balances.posted == 10000
