"""The identity schema: users, customers, roles, sessions, refresh tokens, security events.

What the database itself guarantees, so neither a bug nor a hand-written
statement can undo it:

* personal data columns hold only AES-GCM envelopes (version byte 1 and at
  least header + nonce + tag), never plaintext; emails exist only as a
  32-byte blind index; password hashes are argon2id;
* a refresh token is stored as its 32-byte SHA-256 only; once spent it stays
  spent, and an ended session stays ended with its absolute expiry fixed;
* security events are append-only (no UPDATE, DELETE or TRUNCATE).

Indexes, one per query the service makes:

| query                                       | index                               |
|---------------------------------------------|-------------------------------------|
| a user by email (sign-in, sign-up)          | users_email_index_key (unique)      |
| a user / customer by id                     | primary keys                        |
| failed sign-ins of an email                 | failed_sign_ins primary key         |
| a refresh token by hash                     | refresh_tokens_token_hash_key       |
| live sessions of a user (role revoked)      | sessions_live_by_user (partial)     |
| customers to re-encrypt, in id order        | customers primary key               |
| security events of a user, newest first     | security_events_by_user             |

Revision ID: 0001
"""

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

SCHEMA_SQL = r"""
CREATE SCHEMA IF NOT EXISTS identity;

-- An AES-GCM envelope: version 1, key id, 96-bit nonce, ciphertext, 128-bit tag.
CREATE FUNCTION identity.is_envelope(value bytea) RETURNS boolean
LANGUAGE sql IMMUTABLE AS $$
    SELECT octet_length(value) >= 5 + 12 + 16 AND get_byte(value, 0) = 1
$$;

CREATE TABLE identity.customers (
    id uuid PRIMARY KEY,
    full_name bytea NOT NULL CHECK (identity.is_envelope(full_name)),
    email bytea NOT NULL CHECK (identity.is_envelope(email)),
    phone_number bytea NOT NULL CHECK (identity.is_envelope(phone_number)),
    national_id bytea NOT NULL CHECK (identity.is_envelope(national_id)),
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
);

CREATE TABLE identity.users (
    id uuid PRIMARY KEY,
    customer_id uuid UNIQUE REFERENCES identity.customers (id),
    email_index bytea NOT NULL UNIQUE CHECK (octet_length(email_index) = 32),
    password_hash text NOT NULL CHECK (password_hash LIKE '$argon2id$%'),
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
);

CREATE TABLE identity.user_roles (
    user_id uuid NOT NULL REFERENCES identity.users (id),
    role text NOT NULL CHECK (role IN ('customer', 'support', 'auditor', 'admin', 'reviewer')),
    granted_at timestamptz NOT NULL,
    granted_by text NOT NULL,
    PRIMARY KEY (user_id, role)
);

-- Consecutive failed sign-ins per email (blind index), known user or not.
CREATE TABLE identity.failed_sign_ins (
    email_index bytea PRIMARY KEY CHECK (octet_length(email_index) = 32),
    failures integer NOT NULL CHECK (failures >= 0),
    locked_until timestamptz,
    updated_at timestamptz NOT NULL
);

CREATE TABLE identity.sessions (
    id uuid PRIMARY KEY,
    user_id uuid NOT NULL REFERENCES identity.users (id),
    created_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL,
    ended_at timestamptz,
    end_reason text NOT NULL DEFAULT '',
    client_ip text NOT NULL DEFAULT '',
    CHECK (expires_at > created_at),
    CHECK ((ended_at IS NULL) = (end_reason = ''))
);
CREATE INDEX sessions_live_by_user ON identity.sessions (user_id) WHERE ended_at IS NULL;

CREATE TABLE identity.refresh_tokens (
    id uuid PRIMARY KEY,
    session_id uuid NOT NULL REFERENCES identity.sessions (id),
    token_hash bytea NOT NULL UNIQUE CHECK (octet_length(token_hash) = 32),
    created_at timestamptz NOT NULL,
    used_at timestamptz
);
CREATE INDEX refresh_tokens_by_session ON identity.refresh_tokens (session_id);

CREATE FUNCTION identity.refresh_token_stays_spent() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.token_hash <> OLD.token_hash OR NEW.session_id <> OLD.session_id
       OR (OLD.used_at IS NOT NULL AND NEW.used_at IS DISTINCT FROM OLD.used_at) THEN
        RAISE EXCEPTION 'identity invariant: a spent refresh token stays spent'
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER refresh_tokens_stay_spent BEFORE UPDATE ON identity.refresh_tokens
    FOR EACH ROW EXECUTE FUNCTION identity.refresh_token_stays_spent();

CREATE FUNCTION identity.session_stays_ended() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.user_id <> OLD.user_id OR NEW.expires_at <> OLD.expires_at
       OR (OLD.ended_at IS NOT NULL AND NEW.ended_at IS DISTINCT FROM OLD.ended_at) THEN
        RAISE EXCEPTION 'identity invariant: an ended session stays ended, its expiry fixed'
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER sessions_stay_ended BEFORE UPDATE ON identity.sessions
    FOR EACH ROW EXECUTE FUNCTION identity.session_stays_ended();

-- Who did what, when (UTC), from where, and how it ended. Append-only.
CREATE TABLE identity.security_events (
    seq bigserial PRIMARY KEY,
    occurred_at timestamptz NOT NULL,
    event text NOT NULL,
    outcome text NOT NULL CHECK (outcome IN ('success', 'failure', 'denied')),
    actor text NOT NULL,
    user_id uuid,
    session_id uuid,
    client_ip text NOT NULL DEFAULT '',
    request_id text NOT NULL DEFAULT '',
    details jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX security_events_by_user ON identity.security_events (user_id, seq DESC);

CREATE FUNCTION identity.refuse_rewrite() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'identity invariant: % is append-only (% refused)', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege';
END $$;
CREATE TRIGGER security_events_append_only BEFORE UPDATE OR DELETE ON identity.security_events
    FOR EACH ROW EXECUTE FUNCTION identity.refuse_rewrite();
CREATE TRIGGER security_events_no_truncate BEFORE TRUNCATE ON identity.security_events
    FOR EACH STATEMENT EXECUTE FUNCTION identity.refuse_rewrite();
"""


def upgrade() -> None:
    op.execute(SCHEMA_SQL)


def downgrade() -> None:
    op.execute("DROP SCHEMA identity CASCADE")
