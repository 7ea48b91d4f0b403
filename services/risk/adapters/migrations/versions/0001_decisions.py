"""Every risk decision, kept to be audited and replayed.

One row per transaction id (UNIQUE: scoring is idempotent, and two racing
requests for one id cannot both store a decision). A row holds what is needed
to recompute the decision without the velocity state: the canonical inputs
and their SHA-256, the features the rules and model read, the scores, the
decision and reason codes, and the ruleset and model versions that made it.

Decisions are evidence: a trigger refuses UPDATE and DELETE (and TRUNCATE),
so a decision can be superseded only by a new transaction, never rewritten.

Revision ID: 0001
"""

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

SCHEMA_SQL = r"""
CREATE SCHEMA IF NOT EXISTS risk;

CREATE TABLE risk.decisions (
    id uuid PRIMARY KEY,
    transaction_id text NOT NULL UNIQUE CHECK (length(transaction_id) BETWEEN 1 AND 128),
    inputs_hash char(64) NOT NULL CHECK (inputs_hash ~ '^[0-9a-f]{64}$'),
    inputs jsonb NOT NULL,
    features jsonb NOT NULL,
    score double precision NOT NULL CHECK (score >= 0 AND score <= 1),
    rules_score double precision NOT NULL CHECK (rules_score >= 0 AND rules_score <= 1),
    model_score double precision NOT NULL CHECK (model_score >= 0 AND model_score <= 1),
    decision text NOT NULL CHECK (decision IN ('APPROVE', 'REVIEW', 'DECLINE')),
    reason_codes text[] NOT NULL,
    ruleset_version text NOT NULL,
    model_version text NOT NULL,
    fallback boolean NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX decisions_created_at ON risk.decisions (created_at);

CREATE FUNCTION risk.decisions_are_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'risk.decisions is append-only (% refused)', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;

CREATE TRIGGER decisions_append_only
    BEFORE UPDATE OR DELETE ON risk.decisions
    FOR EACH ROW EXECUTE FUNCTION risk.decisions_are_append_only();

CREATE TRIGGER decisions_no_truncate
    BEFORE TRUNCATE ON risk.decisions
    FOR EACH STATEMENT EXECUTE FUNCTION risk.decisions_are_append_only();
"""


def upgrade() -> None:
    op.execute(SCHEMA_SQL)


def downgrade() -> None:
    op.execute("DROP SCHEMA risk CASCADE")
