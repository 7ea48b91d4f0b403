"""The payment schema: payments, their history, refunds and idempotency keys.

The domain decides every status change; PostgreSQL checks the same rules
again, so neither a bug nor a hand-written statement can bend them:

* a history row must continue the payment's history (its `from_status` is
  the previous row's `to_status`) along an edge of the state machine, listed
  in `allowed_transitions`; history is append-only;
* at commit, a payment's status equals the `to_status` of its newest history
  row, its `refunded_amount` equals the sum of its completed refunds, and its
  completed and pending refunds together never exceed its amount.

Indexes, one per query the service makes:

| query                                          | index                               |
|------------------------------------------------|-------------------------------------|
| a payment by id                                | payments primary key                |
| payments of an account, newest first (paged)   | payments_by_source, _by_destination |
| history / refunds of payments                  | status_changes_by_payment,          |
|                                                | refunds_by_payment                  |
| an idempotency key                             | idempotency_keys primary key        |
| recovery: stale PENDING payments               | payments_pending (partial)          |
| recovery: decided reviews, holds due to expire | payments_in_review (partial)        |
| recovery: stale PENDING refunds                | refunds_pending (partial)           |

Revision ID: 0001
"""

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

SCHEMA_SQL = r"""
CREATE SCHEMA IF NOT EXISTS payment;

CREATE TABLE payment.payments (
    id uuid PRIMARY KEY,
    scope text NOT NULL,
    idempotency_key text NOT NULL,
    source_account_id uuid NOT NULL,
    destination_account_id uuid NOT NULL,
    amount bigint NOT NULL CHECK (amount > 0),
    currency char(3) NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    reference text NOT NULL DEFAULT '' CHECK (char_length(reference) <= 140),
    description text NOT NULL DEFAULT '',
    client_context jsonb NOT NULL DEFAULT '{}'::jsonb,
    payer_customer_id text NOT NULL DEFAULT '',
    status text NOT NULL CHECK (status IN ('PENDING', 'COMPLETED', 'IN_REVIEW', 'DECLINED', 'FAILED',
                                       'REJECTED', 'EXPIRED', 'PARTIALLY_REFUNDED', 'REFUNDED')),
    risk_outcome text CHECK (risk_outcome IN ('APPROVE', 'REVIEW', 'DECLINE')),
    risk_reasons text[] NOT NULL DEFAULT '{}',
    risk_decision_id text NOT NULL DEFAULT '',
    risk_unavailable boolean NOT NULL DEFAULT false,
    failure_reason text NOT NULL DEFAULT '',
    refunded_amount bigint NOT NULL DEFAULT 0,
    review_timeout_seconds integer NOT NULL CHECK (review_timeout_seconds > 0),
    hold_expires_at timestamptz,
    review_decision text CHECK (review_decision IN ('APPROVE', 'REJECT')),
    review_actor text NOT NULL DEFAULT '',
    review_note text NOT NULL DEFAULT '',
    version integer NOT NULL DEFAULT 0,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    CONSTRAINT payments_accounts_differ CHECK (source_account_id <> destination_account_id),
    CONSTRAINT payments_refunds_within_amount
        CHECK (refunded_amount >= 0 AND refunded_amount <= amount),
    -- Money moves only along a route risk chose (or the risk-down policy).
    CONSTRAINT payments_routed_before_money_moves
        CHECK (status IN ('PENDING', 'FAILED')
               OR risk_outcome IS NOT NULL OR risk_unavailable),
    CONSTRAINT payments_one_key_one_payment UNIQUE (scope, idempotency_key)
);

CREATE INDEX payments_by_source
    ON payment.payments (source_account_id, created_at DESC, id DESC);
CREATE INDEX payments_by_destination
    ON payment.payments (destination_account_id, created_at DESC, id DESC);
CREATE INDEX payments_pending ON payment.payments (updated_at) WHERE status = 'PENDING';
CREATE INDEX payments_in_review
    ON payment.payments (hold_expires_at) WHERE status = 'IN_REVIEW';

CREATE TABLE payment.allowed_transitions (
    from_status text NOT NULL,  -- '' for a new payment
    to_status text NOT NULL,
    PRIMARY KEY (from_status, to_status)
);
INSERT INTO payment.allowed_transitions VALUES
    ('', 'PENDING'),
    ('PENDING', 'COMPLETED'), ('PENDING', 'IN_REVIEW'),
    ('PENDING', 'DECLINED'), ('PENDING', 'FAILED'),
    ('IN_REVIEW', 'COMPLETED'), ('IN_REVIEW', 'REJECTED'),
    ('IN_REVIEW', 'EXPIRED'), ('IN_REVIEW', 'FAILED'),
    ('COMPLETED', 'PARTIALLY_REFUNDED'), ('COMPLETED', 'REFUNDED'),
    ('PARTIALLY_REFUNDED', 'PARTIALLY_REFUNDED'), ('PARTIALLY_REFUNDED', 'REFUNDED');

CREATE TABLE payment.status_changes (
    seq bigserial PRIMARY KEY,
    payment_id uuid NOT NULL REFERENCES payment.payments (id),
    from_status text,
    to_status text NOT NULL,
    reason text NOT NULL,
    actor text NOT NULL,
    changed_at timestamptz NOT NULL
);
CREATE INDEX status_changes_by_payment ON payment.status_changes (payment_id, seq);

CREATE TABLE payment.refunds (
    id uuid PRIMARY KEY,
    payment_id uuid NOT NULL REFERENCES payment.payments (id),
    scope text NOT NULL,
    idempotency_key text NOT NULL,
    amount bigint NOT NULL CHECK (amount > 0),
    reason text NOT NULL DEFAULT '',
    status text NOT NULL CHECK (status IN ('PENDING', 'COMPLETED', 'FAILED')),
    failure_reason text NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
);
CREATE INDEX refunds_by_payment ON payment.refunds (payment_id, created_at, id);
CREATE INDEX refunds_pending ON payment.refunds (updated_at) WHERE status = 'PENDING';

CREATE TABLE payment.idempotency_keys (
    scope text NOT NULL,
    key text NOT NULL CHECK (char_length(key) BETWEEN 1 AND 255),
    operation text NOT NULL CHECK (operation IN ('CREATE_PAYMENT', 'REFUND_PAYMENT')),
    fingerprint bytea NOT NULL,
    payment_id uuid NOT NULL,
    refund_id uuid,
    -- NULL until the request (or whoever resumed it) reached an answer.
    response jsonb,
    created_at timestamptz NOT NULL,
    completed_at timestamptz,
    PRIMARY KEY (scope, key),
    CONSTRAINT idempotency_keys_refund_has_id
        CHECK ((operation = 'REFUND_PAYMENT') = (refund_id IS NOT NULL))
);

-- History continues from the last status along an allowed edge.
CREATE FUNCTION payment.check_status_change() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    previous text;
BEGIN
    SELECT to_status INTO previous FROM payment.status_changes
     WHERE payment_id = NEW.payment_id ORDER BY seq DESC LIMIT 1;
    IF previous IS DISTINCT FROM NEW.from_status THEN
        RAISE EXCEPTION 'payment %: history continues from %, not %',
            NEW.payment_id, coalesce(previous, '(none)'), coalesce(NEW.from_status, '(none)')
            USING ERRCODE = 'check_violation';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM payment.allowed_transitions
                    WHERE from_status = coalesce(NEW.from_status, '')
                      AND to_status = NEW.to_status) THEN
        RAISE EXCEPTION 'payment %: % -> % is not a transition of the state machine',
            NEW.payment_id, coalesce(NEW.from_status, '(new)'), NEW.to_status
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER status_changes_follow_the_state_machine
    BEFORE INSERT ON payment.status_changes
    FOR EACH ROW EXECUTE FUNCTION payment.check_status_change();

CREATE FUNCTION payment.refuse_history_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'payment history is append-only' USING ERRCODE = 'check_violation';
END $$;

CREATE TRIGGER status_changes_append_only
    BEFORE UPDATE OR DELETE ON payment.status_changes
    FOR EACH ROW EXECUTE FUNCTION payment.refuse_history_change();
CREATE TRIGGER status_changes_no_truncate
    BEFORE TRUNCATE ON payment.status_changes
    FOR EACH STATEMENT EXECUTE FUNCTION payment.refuse_history_change();

-- At commit: status = newest history row; refunds add up.
CREATE FUNCTION payment.check_payment_consistency() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    pid uuid;
    p payment.payments%ROWTYPE;
    latest text;
    completed bigint;
    reserved bigint;
BEGIN
    -- Two statements, not a CASE: NEW of payments has no payment_id field at all.
    IF TG_TABLE_NAME = 'payments' THEN
        pid := NEW.id;
    ELSE
        pid := NEW.payment_id;
    END IF;
    SELECT * INTO p FROM payment.payments WHERE id = pid;
    SELECT to_status INTO latest FROM payment.status_changes
     WHERE payment_id = pid ORDER BY seq DESC LIMIT 1;
    IF latest IS DISTINCT FROM p.status THEN
        RAISE EXCEPTION 'payment %: status % but its history ends at %',
            pid, p.status, coalesce(latest, '(nothing)') USING ERRCODE = 'check_violation';
    END IF;
    SELECT coalesce(sum(amount) FILTER (WHERE status = 'COMPLETED'), 0),
           coalesce(sum(amount) FILTER (WHERE status IN ('COMPLETED', 'PENDING')), 0)
      INTO completed, reserved
      FROM payment.refunds WHERE payment_id = pid;
    IF completed <> p.refunded_amount OR reserved > p.amount THEN
        RAISE EXCEPTION 'payment %: refunds (% done, % reserved) do not fit % refunded of %',
            pid, completed, reserved, p.refunded_amount, p.amount
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END $$;

CREATE CONSTRAINT TRIGGER payments_consistent
    AFTER INSERT OR UPDATE ON payment.payments
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION payment.check_payment_consistency();
CREATE CONSTRAINT TRIGGER refunds_consistent
    AFTER INSERT OR UPDATE ON payment.refunds
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION payment.check_payment_consistency();
"""


def upgrade() -> None:
    op.execute(SCHEMA_SQL)


def downgrade() -> None:
    op.execute("DROP SCHEMA payment CASCADE")
