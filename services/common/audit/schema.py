"""The audit log's table, triggers and grants, shared by every service's migrations.

A service's migration is two calls:

    op.execute(schema.AUDIT_LOG_SQL)
    op.execute(schema.app_role_grants_sql(["ledger"]))

`audit.chain()` is the only writer of `seq`, `prev_hash` and `hash`: it takes
a transaction-level advisory lock (one chain per database, so writers queue;
the lock is held to commit, which is why a unit of work appends its audit
rows last), reads the newest row, and hashes the new one. Under READ
COMMITTED each statement of a volatile function sees what committed before
it, so the newest row read after the lock is the real head. A transaction
that rolls back leaves no number behind: the next one reads the same head.

The hash covers a canonical text, built the same way in `chain.py`:

    bankmesh.audit.v1, then for each of seq, occurred_at (UTC, microseconds,
    `2026-01-02T03:04:05.000006Z`), service, actor, action, subject, outcome,
    source, details (jsonb's own text form), prev_hash (hex):
    <length in UTF-8 bytes>:<value>,

Lengths make the encoding unambiguous without escaping anything.

`bankmesh_app` is a NOLOGIN group role: the services log in as members of it
(`mesh.runtime.postgres.ensure_service_role`), migrations as the admin. It
may read and write the service's tables, and only SELECT and INSERT the
audit log. A server where we may not create roles keeps the triggers as the
only guard, and says so in a NOTICE.
"""

from __future__ import annotations

from collections.abc import Sequence

APP_ROLE = "bankmesh_app"
# pg_advisory_xact_lock(int, int) lives apart from the bigint form the ledger
# and payment locks use, so this key cannot collide with theirs.
CHAIN_LOCK = (0x61756474, 1)  # "audt"
GENESIS_HASH = bytes(32)

AUDIT_LOG_SQL = f"""
CREATE SCHEMA IF NOT EXISTS audit;

CREATE TABLE audit.events (
    seq bigint PRIMARY KEY,
    occurred_at timestamptz NOT NULL DEFAULT now(),
    service text NOT NULL,
    actor text NOT NULL,
    action text NOT NULL,
    subject text NOT NULL DEFAULT '',
    outcome text NOT NULL CHECK (outcome IN ('success', 'failure', 'denied')),
    source text NOT NULL DEFAULT '',
    details jsonb NOT NULL DEFAULT '{{}}'::jsonb,
    prev_hash bytea NOT NULL,
    hash bytea NOT NULL
);
CREATE INDEX events_by_subject ON audit.events (subject, seq);

CREATE FUNCTION audit.field(value text) RETURNS text
LANGUAGE sql IMMUTABLE STRICT AS $$
    SELECT octet_length(convert_to(value, 'UTF8'))::text || ':' || value || ','
$$;

CREATE FUNCTION audit.canonical(
    seq bigint, occurred_at timestamptz, service text, actor text, action text,
    subject text, outcome text, source text, details jsonb, prev_hash bytea
) RETURNS text
LANGUAGE sql IMMUTABLE STRICT AS $$
    SELECT 'bankmesh.audit.v1,'
        || audit.field(seq::text)
        || audit.field(to_char(occurred_at AT TIME ZONE 'UTC',
                               'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'))
        || audit.field(service) || audit.field(actor) || audit.field(action)
        || audit.field(subject) || audit.field(outcome) || audit.field(source)
        || audit.field(details::text) || audit.field(encode(prev_hash, 'hex'))
$$;

-- The same text as audit.canonical(), built inline: calling SQL functions
-- from PL/pgSQL for every row cost five times the INSERT itself.
CREATE FUNCTION audit.chain() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    head_seq bigint;
    head_hash bytea;
    canonical text := 'bankmesh.audit.v1,';
    f text;
BEGIN
    PERFORM pg_advisory_xact_lock({CHAIN_LOCK[0]}, {CHAIN_LOCK[1]});
    SELECT e.seq, e.hash INTO head_seq, head_hash
      FROM audit.events AS e ORDER BY e.seq DESC LIMIT 1;
    NEW.seq := coalesce(head_seq, 0) + 1;
    NEW.prev_hash := coalesce(head_hash, '\\x{GENESIS_HASH.hex()}'::bytea);
    NEW.occurred_at := coalesce(NEW.occurred_at, now());
    NEW.subject := coalesce(NEW.subject, '');
    NEW.source := coalesce(NEW.source, '');
    NEW.details := coalesce(NEW.details, '{{}}'::jsonb);
    FOREACH f IN ARRAY ARRAY[
        NEW.seq::text,
        to_char(NEW.occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
        NEW.service, NEW.actor, NEW.action, NEW.subject, NEW.outcome, NEW.source,
        NEW.details::text, encode(NEW.prev_hash, 'hex')]
    LOOP
        canonical := canonical || octet_length(convert_to(f, 'UTF8')) || ':' || f || ',';
    END LOOP;
    NEW.hash := sha256(convert_to(canonical, 'UTF8'));
    RETURN NEW;
END $$;
CREATE TRIGGER events_chain BEFORE INSERT ON audit.events
    FOR EACH ROW EXECUTE FUNCTION audit.chain();

CREATE FUNCTION audit.refuse_rewrite() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit log: % is append-only (% refused)', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege';
END $$;
CREATE TRIGGER events_append_only BEFORE UPDATE OR DELETE ON audit.events
    FOR EACH ROW EXECUTE FUNCTION audit.refuse_rewrite();
CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON audit.events
    FOR EACH STATEMENT EXECUTE FUNCTION audit.refuse_rewrite();
"""  # noqa: S608 - only this module's constants are interpolated


def app_role_grants_sql(schemas: Sequence[str]) -> str:
    """Create `bankmesh_app` if missing; grant it the service's `schemas` and the audit log.

    Safe to run again (later migrations add tables: default privileges cover
    the ones the migrating role creates, running this again covers the rest).
    """
    for schema in schemas:
        if not schema.isidentifier() or schema.lower() != schema:
            raise ValueError(f"not a plain schema name: {schema!r}")
    grants = "\n".join(
        f"""
        EXECUTE 'GRANT USAGE ON SCHEMA {s} TO {APP_ROLE}';
        EXECUTE 'GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {s} TO {APP_ROLE}';
        EXECUTE 'GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA {s} TO {APP_ROLE}';
        EXECUTE 'ALTER DEFAULT PRIVILEGES IN SCHEMA {s}
                 GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {APP_ROLE}';
        EXECUTE 'ALTER DEFAULT PRIVILEGES IN SCHEMA {s}
                 GRANT USAGE, SELECT, UPDATE ON SEQUENCES TO {APP_ROLE}';"""
        for s in schemas
    )
    return f"""
DO $grants$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{APP_ROLE}') THEN
        BEGIN
            CREATE ROLE {APP_ROLE} NOLOGIN;
        EXCEPTION
            -- another database's migration created it at the same moment
            WHEN duplicate_object OR unique_violation THEN NULL;
            WHEN insufficient_privilege THEN
                RAISE NOTICE 'audit log: may not create role {APP_ROLE}; services keep '
                    'the connecting role, and only triggers keep the audit log append-only';
                RETURN;
        END;
    END IF;
    {grants}
    EXECUTE 'GRANT USAGE ON SCHEMA audit TO {APP_ROLE}';
    EXECUTE 'REVOKE ALL ON audit.events FROM {APP_ROLE}';
    EXECUTE 'GRANT SELECT, INSERT ON audit.events TO {APP_ROLE}';
END $grants$;
"""  # noqa: S608 - role and checked schema names only
