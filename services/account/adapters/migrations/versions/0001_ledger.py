"""The ledger schema, with double entry enforced by PostgreSQL itself.

The service computes every balance and limit in its domain engine; these
constraints are the second line, so that neither a bug nor a hand-written SQL
statement can unbalance the books:

* `accounts` CHECKs: counters are non-negative, a no-overdraft account cannot
  be debited past its credits (plus its agreed overdraft), a closed account is empty.
* `entries` form a chain per account: each row's counters must equal the
  previous row's plus this row's delta, and time only moves forward.
* at commit, every transfer must have exactly one debit and one credit entry
  whose amounts match its kind (debits = credits), in the accounts' currency,
  and each account's counters must equal the head of its entry chain.
* transfers, entries and failed ids are append-only; an id is either a
  transfer or a failure, never both; a hold is resolved at most once.

Revision ID: 0001
"""

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

SCHEMA_SQL = r"""
CREATE SCHEMA IF NOT EXISTS ledger;

CREATE TABLE ledger.accounts (
    id uuid PRIMARY KEY,
    customer_id text NOT NULL DEFAULT '',
    currency char(3) NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    type text NOT NULL CHECK (type IN ('CUSTOMER', 'SETTLEMENT', 'INTERNAL')),
    status text NOT NULL DEFAULT 'ACTIVE' CHECK (status IN ('ACTIVE', 'FROZEN', 'CLOSED')),
    debits_must_not_exceed_credits boolean NOT NULL DEFAULT false,
    credits_must_not_exceed_debits boolean NOT NULL DEFAULT false,
    overdraft_limit bigint NOT NULL DEFAULT 0 CHECK (overdraft_limit >= 0),
    metadata jsonb NOT NULL DEFAULT '{}'::jsonb,
    debits_posted bigint NOT NULL DEFAULT 0 CHECK (debits_posted >= 0),
    credits_posted bigint NOT NULL DEFAULT 0 CHECK (credits_posted >= 0),
    debits_pending bigint NOT NULL DEFAULT 0 CHECK (debits_pending >= 0),
    credits_pending bigint NOT NULL DEFAULT 0 CHECK (credits_pending >= 0),
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    last_entry_at timestamptz,
    CONSTRAINT accounts_one_limit_flag
        CHECK (NOT (debits_must_not_exceed_credits AND credits_must_not_exceed_debits)),
    CONSTRAINT accounts_overdraft_needs_debit_limit
        CHECK (overdraft_limit = 0 OR debits_must_not_exceed_credits),
    CONSTRAINT accounts_debits_within_limit
        CHECK (NOT debits_must_not_exceed_credits
               OR debits_posted + debits_pending <= credits_posted + overdraft_limit),
    CONSTRAINT accounts_credits_within_limit
        CHECK (NOT credits_must_not_exceed_debits
               OR credits_posted + credits_pending <= debits_posted),
    CONSTRAINT accounts_closed_is_empty
        CHECK (status <> 'CLOSED'
               OR (debits_posted = credits_posted AND debits_pending = 0 AND credits_pending = 0))
);
CREATE INDEX accounts_by_customer ON ledger.accounts (customer_id, created_at, id)
    WHERE customer_id <> '';

CREATE TABLE ledger.transfers (
    id uuid PRIMARY KEY,
    kind text NOT NULL CHECK (kind IN
        ('SINGLE_PHASE', 'PENDING', 'POST_PENDING', 'VOID_PENDING', 'EXPIRE_PENDING')),
    debit_account_id uuid NOT NULL REFERENCES ledger.accounts (id),
    credit_account_id uuid NOT NULL REFERENCES ledger.accounts (id),
    amount bigint NOT NULL CHECK (amount > 0),
    currency char(3) NOT NULL,
    pending_id uuid REFERENCES ledger.transfers (id),
    timeout_seconds integer NOT NULL DEFAULT 0 CHECK (timeout_seconds >= 0),
    expires_at timestamptz,
    code integer NOT NULL DEFAULT 0,
    metadata jsonb NOT NULL DEFAULT '{}'::jsonb,
    request_hash bytea NOT NULL,
    created_at timestamptz NOT NULL,
    CONSTRAINT transfers_accounts_differ CHECK (debit_account_id <> credit_account_id),
    CONSTRAINT transfers_pending_id_iff_resolution CHECK (
        (pending_id IS NOT NULL) = (kind IN ('POST_PENDING', 'VOID_PENDING', 'EXPIRE_PENDING'))),
    CONSTRAINT transfers_expiry_only_on_holds CHECK (expires_at IS NULL OR kind = 'PENDING')
);
-- A hold is posted, voided or expired once: the database refuses a second resolution.
CREATE UNIQUE INDEX transfers_one_resolution_per_hold ON ledger.transfers (pending_id)
    WHERE pending_id IS NOT NULL;

CREATE TABLE ledger.entries (
    seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    transfer_id uuid NOT NULL REFERENCES ledger.transfers (id) DEFERRABLE INITIALLY DEFERRED,
    account_id uuid NOT NULL REFERENCES ledger.accounts (id),
    direction char(1) NOT NULL CHECK (direction IN ('D', 'C')),
    posted_delta bigint NOT NULL CHECK (posted_delta >= 0),
    pending_delta bigint NOT NULL,
    debits_posted bigint NOT NULL,
    credits_posted bigint NOT NULL,
    debits_pending bigint NOT NULL,
    credits_pending bigint NOT NULL,
    created_at timestamptz NOT NULL,
    CONSTRAINT entries_one_leg_per_side UNIQUE (transfer_id, direction)
);
-- Statements (newest first) and point-in-time balances both walk this index.
CREATE INDEX entries_by_account_time ON ledger.entries (account_id, created_at, seq);

CREATE TABLE ledger.failed_transfers (
    id uuid PRIMARY KEY,
    reason text NOT NULL,
    request_hash bytea NOT NULL,
    failed_at timestamptz NOT NULL
);

-- Open holds that have a timeout; rows leave when the hold is resolved.
CREATE TABLE ledger.expiring_holds (
    transfer_id uuid PRIMARY KEY REFERENCES ledger.transfers (id),
    debit_account_id uuid NOT NULL,
    credit_account_id uuid NOT NULL,
    expires_at timestamptz NOT NULL
);
CREATE INDEX expiring_holds_due ON ledger.expiring_holds (expires_at);
CREATE INDEX expiring_holds_by_debit ON ledger.expiring_holds (debit_account_id, expires_at);
CREATE INDEX expiring_holds_by_credit ON ledger.expiring_holds (credit_account_id, expires_at);

-- Each entry continues its account's chain: counters after = previous + delta.
CREATE FUNCTION ledger.entry_continues_chain() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    prev record;
    dp bigint := 0; cp bigint := 0; dpe bigint := 0; cpe bigint := 0;
BEGIN
    SELECT e.debits_posted, e.credits_posted, e.debits_pending, e.credits_pending, e.created_at
      INTO prev
      FROM ledger.entries e
     WHERE e.account_id = NEW.account_id
     ORDER BY e.created_at DESC, e.seq DESC
     LIMIT 1;
    IF FOUND THEN
        IF NEW.created_at <= prev.created_at THEN
            RAISE EXCEPTION 'ledger invariant: entry for account % is older than the one before',
                NEW.account_id USING ERRCODE = 'check_violation';
        END IF;
        dp := prev.debits_posted; cp := prev.credits_posted;
        dpe := prev.debits_pending; cpe := prev.credits_pending;
    END IF;
    IF NEW.direction = 'D' THEN
        dp := dp + NEW.posted_delta; dpe := dpe + NEW.pending_delta;
    ELSE
        cp := cp + NEW.posted_delta; cpe := cpe + NEW.pending_delta;
    END IF;
    IF (NEW.debits_posted, NEW.credits_posted, NEW.debits_pending, NEW.credits_pending)
       IS DISTINCT FROM (dp, cp, dpe, cpe) THEN
        RAISE EXCEPTION 'ledger invariant: entry for account % does not continue its chain',
            NEW.account_id USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER entries_continue_chain BEFORE INSERT ON ledger.entries
    FOR EACH ROW EXECUTE FUNCTION ledger.entry_continues_chain();

-- The counters stored on an account equal the head of its entry chain.
CREATE FUNCTION ledger.assert_account_matches_chain(account uuid) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    acc record;
    dp bigint := 0; cp bigint := 0; dpe bigint := 0; cpe bigint := 0;
    last_at timestamptz := NULL;
BEGIN
    SELECT a.debits_posted, a.credits_posted, a.debits_pending, a.credits_pending, a.last_entry_at
      INTO acc FROM ledger.accounts a WHERE a.id = account;
    SELECT e.debits_posted, e.credits_posted, e.debits_pending, e.credits_pending, e.created_at
      INTO dp, cp, dpe, cpe, last_at
      FROM ledger.entries e
     WHERE e.account_id = account
     ORDER BY e.created_at DESC, e.seq DESC
     LIMIT 1;
    IF NOT FOUND THEN
        dp := 0; cp := 0; dpe := 0; cpe := 0; last_at := NULL;
    END IF;
    IF (acc.debits_posted, acc.credits_posted, acc.debits_pending, acc.credits_pending,
        acc.last_entry_at) IS DISTINCT FROM (dp, cp, dpe, cpe, last_at) THEN
        RAISE EXCEPTION 'ledger invariant: balances of account % differ from its entries', account
            USING ERRCODE = 'check_violation';
    END IF;
END $$;

CREATE FUNCTION ledger.account_matches_chain() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    -- Deferred: runs at commit, against the row as it is then, not as it was at the event.
    PERFORM ledger.assert_account_matches_chain(NEW.id);
    RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER accounts_match_chain AFTER INSERT OR UPDATE ON ledger.accounts
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION ledger.account_matches_chain();

CREATE FUNCTION ledger.account_identity_is_fixed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.id <> OLD.id OR NEW.currency <> OLD.currency OR NEW.type <> OLD.type
       OR NEW.created_at <> OLD.created_at THEN
        RAISE EXCEPTION 'ledger invariant: account id, currency, type and creation time are fixed'
            USING ERRCODE = 'check_violation';
    END IF;
    IF OLD.status = 'CLOSED' AND NEW.status <> 'CLOSED' THEN
        RAISE EXCEPTION 'ledger invariant: account % is closed for good', OLD.id
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER accounts_identity_is_fixed BEFORE UPDATE ON ledger.accounts
    FOR EACH ROW EXECUTE FUNCTION ledger.account_identity_is_fixed();

-- Double entry, checked per transfer at commit.
CREATE FUNCTION ledger.transfer_is_balanced() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    legs integer;
    debit_leg record;
    credit_leg record;
    hold record;
    expected_posted bigint;
    expected_pending bigint;
BEGIN
    SELECT count(*) INTO legs FROM ledger.entries WHERE transfer_id = NEW.id;
    SELECT * INTO debit_leg FROM ledger.entries WHERE transfer_id = NEW.id AND direction = 'D';
    SELECT * INTO credit_leg FROM ledger.entries WHERE transfer_id = NEW.id AND direction = 'C';
    IF legs <> 2 OR debit_leg IS NULL OR credit_leg IS NULL
       OR debit_leg.account_id <> NEW.debit_account_id
       OR credit_leg.account_id <> NEW.credit_account_id THEN
        RAISE EXCEPTION 'ledger invariant: transfer % needs one debit and one credit entry',
            NEW.id USING ERRCODE = 'check_violation';
    END IF;
    IF (debit_leg.posted_delta, debit_leg.pending_delta)
       IS DISTINCT FROM (credit_leg.posted_delta, credit_leg.pending_delta) THEN
        RAISE EXCEPTION 'ledger invariant: debits and credits of transfer % differ', NEW.id
            USING ERRCODE = 'check_violation';
    END IF;

    IF NEW.kind = 'SINGLE_PHASE' THEN
        expected_posted := NEW.amount; expected_pending := 0;
    ELSIF NEW.kind = 'PENDING' THEN
        expected_posted := 0; expected_pending := NEW.amount;
    ELSE
        SELECT * INTO hold FROM ledger.transfers WHERE id = NEW.pending_id;
        IF hold.kind <> 'PENDING' OR hold.debit_account_id <> NEW.debit_account_id
           OR hold.credit_account_id <> NEW.credit_account_id OR hold.currency <> NEW.currency
           OR (NEW.kind = 'POST_PENDING' AND NEW.amount > hold.amount)
           OR (NEW.kind <> 'POST_PENDING' AND NEW.amount <> hold.amount) THEN
            RAISE EXCEPTION 'ledger invariant: transfer % does not match its hold', NEW.id
                USING ERRCODE = 'check_violation';
        END IF;
        expected_posted := CASE WHEN NEW.kind = 'POST_PENDING' THEN NEW.amount ELSE 0 END;
        expected_pending := -hold.amount;
    END IF;
    IF (debit_leg.posted_delta, debit_leg.pending_delta)
       IS DISTINCT FROM (expected_posted, expected_pending) THEN
        RAISE EXCEPTION 'ledger invariant: entries of transfer % do not match its amount', NEW.id
            USING ERRCODE = 'check_violation';
    END IF;

    IF EXISTS (SELECT 1 FROM ledger.accounts a
                WHERE a.id IN (NEW.debit_account_id, NEW.credit_account_id)
                  AND a.currency <> NEW.currency) THEN
        RAISE EXCEPTION 'ledger invariant: transfer % is not in its accounts'' currency', NEW.id
            USING ERRCODE = 'check_violation';
    END IF;
    PERFORM ledger.assert_account_matches_chain(NEW.debit_account_id);
    PERFORM ledger.assert_account_matches_chain(NEW.credit_account_id);
    RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER transfers_are_balanced AFTER INSERT ON ledger.transfers
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION ledger.transfer_is_balanced();

-- An id is a transfer or a failure, never both. The advisory lock makes two
-- concurrent transactions inserting the same id into the two tables queue up,
-- so the second one sees the first.
CREATE FUNCTION ledger.transfer_id_is_unused() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended(NEW.id::text, 0));
    IF TG_TABLE_NAME = 'transfers' THEN
        PERFORM 1 FROM ledger.failed_transfers WHERE id = NEW.id;
    ELSE
        PERFORM 1 FROM ledger.transfers WHERE id = NEW.id;
    END IF;
    IF FOUND THEN
        RAISE EXCEPTION 'transfer id % is already used', NEW.id USING ERRCODE = 'unique_violation';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER transfers_id_unused BEFORE INSERT ON ledger.transfers
    FOR EACH ROW EXECUTE FUNCTION ledger.transfer_id_is_unused();
CREATE TRIGGER failed_transfers_id_unused BEFORE INSERT ON ledger.failed_transfers
    FOR EACH ROW EXECUTE FUNCTION ledger.transfer_id_is_unused();

-- History is append-only.
CREATE FUNCTION ledger.refuse_rewrite() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'ledger invariant: % is append-only (% refused)', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege';
END $$;
CREATE TRIGGER transfers_append_only BEFORE UPDATE OR DELETE ON ledger.transfers
    FOR EACH ROW EXECUTE FUNCTION ledger.refuse_rewrite();
CREATE TRIGGER entries_append_only BEFORE UPDATE OR DELETE ON ledger.entries
    FOR EACH ROW EXECUTE FUNCTION ledger.refuse_rewrite();
CREATE TRIGGER failed_transfers_append_only BEFORE UPDATE OR DELETE ON ledger.failed_transfers
    FOR EACH ROW EXECUTE FUNCTION ledger.refuse_rewrite();
CREATE TRIGGER transfers_no_truncate BEFORE TRUNCATE ON ledger.transfers
    FOR EACH STATEMENT EXECUTE FUNCTION ledger.refuse_rewrite();
CREATE TRIGGER entries_no_truncate BEFORE TRUNCATE ON ledger.entries
    FOR EACH STATEMENT EXECUTE FUNCTION ledger.refuse_rewrite();
CREATE TRIGGER failed_transfers_no_truncate BEFORE TRUNCATE ON ledger.failed_transfers
    FOR EACH STATEMENT EXECUTE FUNCTION ledger.refuse_rewrite();
"""


def upgrade() -> None:
    op.execute(SCHEMA_SQL)


def downgrade() -> None:
    op.execute("DROP SCHEMA ledger CASCADE")
