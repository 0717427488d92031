-- Accounts carry their maintained balance row: updated in the same transaction as every
-- transfer or reservation that touches them, never recomputed from history on a hot path.
CREATE TABLE accounts (
    id              TEXT PRIMARY KEY,
    name            TEXT NOT NULL UNIQUE,
    kind            TEXT NOT NULL,
    floor_nanos     INTEGER,
    credits_posted  INTEGER NOT NULL DEFAULT 0 CHECK (credits_posted >= 0),
    debits_posted   INTEGER NOT NULL DEFAULT 0 CHECK (debits_posted >= 0),
    debits_pending  INTEGER NOT NULL DEFAULT 0 CHECK (debits_pending >= 0),
    created_us      INTEGER NOT NULL,
    -- The database itself refuses a balance below the floor, whatever the application does.
    CHECK (floor_nanos IS NULL OR credits_posted - debits_posted - debits_pending >= floor_nanos)
);

CREATE TABLE transfers (
    seq                INTEGER PRIMARY KEY AUTOINCREMENT,
    id                 TEXT NOT NULL UNIQUE,
    debit_account_id   TEXT NOT NULL REFERENCES accounts(id),
    credit_account_id  TEXT NOT NULL REFERENCES accounts(id),
    amount_nanos       INTEGER NOT NULL CHECK (amount_nanos > 0),
    kind               TEXT NOT NULL,
    reference          TEXT,
    idempotency_key    TEXT UNIQUE,
    created_us         INTEGER NOT NULL,
    CHECK (debit_account_id <> credit_account_id)
);
CREATE INDEX transfers_debit ON transfers (debit_account_id, seq);
CREATE INDEX transfers_credit ON transfers (credit_account_id, seq);

CREATE TABLE reservations (
    id             TEXT PRIMARY KEY,
    account_id     TEXT NOT NULL REFERENCES accounts(id),
    amount_nanos   INTEGER NOT NULL CHECK (amount_nanos >= 0),
    request_id     TEXT NOT NULL UNIQUE,
    state          TEXT NOT NULL,
    charged_nanos  INTEGER,
    created_us     INTEGER NOT NULL,
    expires_us     INTEGER NOT NULL,
    closed_us      INTEGER
);
CREATE INDEX reservations_pending ON reservations (expires_us) WHERE state = 'pending';

CREATE TABLE api_keys (
    id          TEXT PRIMARY KEY,
    account_id  TEXT NOT NULL REFERENCES accounts(id),
    prefix      TEXT NOT NULL UNIQUE,
    hash_hex    TEXT NOT NULL,
    label       TEXT,
    created_us  INTEGER NOT NULL,
    revoked_us  INTEGER
);
CREATE INDEX api_keys_account ON api_keys (account_id);

CREATE TABLE usage_events (
    request_id           TEXT PRIMARY KEY,
    created_us           INTEGER NOT NULL,
    account_id           TEXT NOT NULL REFERENCES accounts(id),
    api_key_id           TEXT NOT NULL,
    api                  TEXT NOT NULL,
    model                TEXT NOT NULL,
    upstream             TEXT NOT NULL,
    status               TEXT NOT NULL,
    http_status          INTEGER NOT NULL,
    input_tokens         INTEGER NOT NULL,
    cached_tokens        INTEGER NOT NULL,
    output_tokens        INTEGER NOT NULL,
    reasoning_tokens     INTEGER NOT NULL,
    prompt_tokens_local  INTEGER NOT NULL,
    usage_source         TEXT NOT NULL,
    cost_nanos           INTEGER NOT NULL,
    reserved_nanos       INTEGER NOT NULL,
    unbilled_nanos       INTEGER NOT NULL,
    latency_ms           INTEGER NOT NULL,
    ttft_ms              INTEGER,
    error_code           TEXT,
    detail               TEXT NOT NULL
);
CREATE INDEX usage_events_account ON usage_events (account_id, created_us);
CREATE INDEX usage_events_created ON usage_events (created_us);

INSERT INTO accounts (id, name, kind, floor_nanos, created_us)
VALUES ('acc_funding', 'ciyuan:funding', 'funding', NULL, 0),
       ('acc_revenue', 'ciyuan:revenue', 'revenue', NULL, 0);
