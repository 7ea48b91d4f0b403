"""Check the overdraft limit without overflowing bigint.

`credits_posted + overdraft_limit` overflows once an account with a very
large agreed overdraft receives credits, and PostgreSQL then rejects every
update of that account with "bigint out of range". Comparing what the
account owes against the limit (`debits - credits <= overdraft_limit`)
states the same rule with values that stay in range: the debit counters'
sum already fits in a bigint, and subtracting credits only lowers it.

Revision ID: 0002
Revises: 0001
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        ALTER TABLE ledger.accounts
            DROP CONSTRAINT accounts_debits_within_limit,
            ADD CONSTRAINT accounts_debits_within_limit
                CHECK (NOT debits_must_not_exceed_credits
                       OR debits_posted + debits_pending - credits_posted <= overdraft_limit)
        """
    )


def downgrade() -> None:
    op.execute(
        """
        ALTER TABLE ledger.accounts
            DROP CONSTRAINT accounts_debits_within_limit,
            ADD CONSTRAINT accounts_debits_within_limit
                CHECK (NOT debits_must_not_exceed_credits
                       OR debits_posted + debits_pending <= credits_posted + overdraft_limit)
        """
    )
