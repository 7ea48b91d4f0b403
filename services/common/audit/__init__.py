"""The tamper-evident audit log every service keeps in its own database.

Security and money events (who, what, when in UTC, where, outcome) are rows
of `audit.events`, appended in the same transaction as the change they
describe. The database itself chains them: a BEFORE INSERT trigger numbers
each row (`seq`, gapless), copies the hash of the row before it into
`prev_hash` and stores `hash = sha256(canonical encoding of the row)`, so the
application cannot choose either. Rows are append-only twice over: triggers
refuse UPDATE, DELETE and TRUNCATE, and the services connect as members of
`bankmesh_app`, which may only SELECT and INSERT there.

A superuser can still disable the triggers and rewrite rows. That is what
the chain and the checkpoints catch: `verify` recomputes every hash outside
the database, and each service signs the head of its chain (Ed25519, key
outside the database) into a checkpoint file outside the database, so even
a chain rewritten from the first row up, or cut short, no longer matches.

    events.py       AuditEvent and Origin (who, where), pure
    origin.py       the Origin of the RPC being served
    schema.py       the table, triggers and grants (each service's migration)
    store.py        writing events in a transaction, reading the chain
    chain.py        the canonical encoding and the verifier
    checkpoints.py  signing keys, signed checkpoints, the periodic signer
    reader.py       reading the chain back: verify, recent events
    service.py      what a service process runs: denial writer, checkpoints

This module imports nothing, so the pure domain code may use `events`.
"""
