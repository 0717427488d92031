-- Tamper evidence, overage/refund/expiry transfers, grant lots with expiry, signed checkpoints.

-- Transfers gain metadata (canonical JSON) and their chain hash. Rows written before this
-- migration get their hash when the store first opens (one hashing code path for both dialects);
-- the partial index finds them without scanning a sealed table.
ALTER TABLE transfers ADD COLUMN metadata TEXT;
ALTER TABLE transfers ADD COLUMN hash TEXT;
CREATE INDEX transfers_unsealed ON transfers (seq) WHERE hash IS NULL;
CREATE INDEX transfers_reference ON transfers (reference) WHERE reference IS NOT NULL;

-- The chain head: one row, locked by every transaction that appends a transfer, so chain
-- positions are dense and hashes are computed in order.
CREATE TABLE ledger_head (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    seq   BIGINT NOT NULL,
    hash  TEXT NOT NULL
);
INSERT INTO ledger_head (id, seq, hash)
VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');

-- The earliest expiry among the account's open lots: reserve refuses to spend past it until
-- the expiry is booked, at no extra query on the hot path.
ALTER TABLE accounts ADD COLUMN next_expiry_us BIGINT;

CREATE TABLE grant_lots (
    id               TEXT PRIMARY KEY,
    account_id       TEXT NOT NULL REFERENCES accounts(id),
    amount_nanos     BIGINT NOT NULL CHECK (amount_nanos >= 0),
    remaining_nanos  BIGINT NOT NULL CHECK (remaining_nanos >= 0),
    expires_us       BIGINT,
    created_us       BIGINT NOT NULL,
    CHECK (remaining_nanos <= amount_nanos)
);
CREATE INDEX grant_lots_open ON grant_lots (account_id) WHERE remaining_nanos > 0;
CREATE INDEX grant_lots_expiring ON grant_lots (expires_us) WHERE remaining_nanos > 0 AND expires_us IS NOT NULL;

-- Credit granted before lots existed becomes one lot that never expires.
INSERT INTO grant_lots (id, account_id, amount_nanos, remaining_nanos, expires_us, created_us)
SELECT 'lot_legacy_' || id, id, credits_posted - debits_posted, credits_posted - debits_posted, NULL, 0
FROM accounts WHERE kind = 'customer' AND credits_posted - debits_posted > 0;

CREATE TABLE checkpoints (
    seq         BIGINT PRIMARY KEY,
    hash        TEXT NOT NULL,
    created_us  BIGINT NOT NULL,
    public_key  TEXT NOT NULL,
    signature   TEXT NOT NULL
);

INSERT INTO accounts (id, name, kind, floor_nanos, created_us)
VALUES ('acc_expiry', 'ciyuan:expiry', 'expiry', NULL, 0);
