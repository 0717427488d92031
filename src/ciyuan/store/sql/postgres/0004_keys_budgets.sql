-- Keys for fleets (scopes, expiry, tags, rate-limit numbers, rotation) and budgets (spend caps
-- per key or account and period) with the webhooks their soft thresholds fire.

-- Scopes are JSON lists (NULL: no restriction): model globs such as "gpt-4o*", and API names
-- (chat, completions, embeddings, responses, anthropic_messages). metadata is a JSON object of
-- tags. rpm, tpm and concurrency_max are stored here and enforced by the rate limiter (NULL:
-- no per-key limit). A rotated key names the key it replaced, which expires after the overlap.
ALTER TABLE api_keys ADD COLUMN expires_us BIGINT;
ALTER TABLE api_keys ADD COLUMN models TEXT;
ALTER TABLE api_keys ADD COLUMN apis TEXT;
ALTER TABLE api_keys ADD COLUMN metadata TEXT NOT NULL DEFAULT '{}';
ALTER TABLE api_keys ADD COLUMN rpm BIGINT CHECK (rpm IS NULL OR rpm > 0);
ALTER TABLE api_keys ADD COLUMN tpm BIGINT CHECK (tpm IS NULL OR tpm > 0);
ALTER TABLE api_keys ADD COLUMN concurrency_max BIGINT CHECK (concurrency_max IS NULL OR concurrency_max > 0);
ALTER TABLE api_keys ADD COLUMN rotated_from_id TEXT;

-- One budget per (subject, period); subject is the key's id (key_…) or the account's (acc_…).
CREATE TABLE budgets (
    id             TEXT PRIMARY KEY,
    account_id     TEXT NOT NULL REFERENCES accounts(id),
    api_key_id     TEXT REFERENCES api_keys(id),
    subject        TEXT NOT NULL,
    period         TEXT NOT NULL CHECK (period IN ('day', 'week', 'month', 'total')),
    amount_nanos   BIGINT NOT NULL CHECK (amount_nanos > 0),
    thresholds     TEXT NOT NULL DEFAULT '[]',
    webhook_url    TEXT,
    created_us     BIGINT NOT NULL,
    UNIQUE (subject, period)
);
CREATE INDEX budgets_account ON budgets (account_id);

-- Settled spend and pending holds of one budget in one period: reserve adds its hold with a
-- conditional UPDATE (spent + held + hold <= cap) in the reservation's own transaction, so
-- concurrent gateways cannot both pass the cap; settle swaps the hold for the real charge.
CREATE TABLE budget_spend (
    budget_id        TEXT NOT NULL REFERENCES budgets(id) ON DELETE CASCADE,
    period_start_us  BIGINT NOT NULL,
    spent_nanos      BIGINT NOT NULL DEFAULT 0 CHECK (spent_nanos >= 0),
    held_nanos       BIGINT NOT NULL DEFAULT 0 CHECK (held_nanos >= 0),
    PRIMARY KEY (budget_id, period_start_us)
);

-- Which budget periods a reservation's hold was counted in, so settle, void and expiry
-- release exactly that (a request admitted at 23:59 counts in the day it was admitted).
CREATE TABLE budget_holds (
    reservation_id   TEXT NOT NULL,
    budget_id        TEXT NOT NULL REFERENCES budgets(id) ON DELETE CASCADE,
    period_start_us  BIGINT NOT NULL,
    held_nanos       BIGINT NOT NULL CHECK (held_nanos >= 0),
    PRIMARY KEY (reservation_id, budget_id)
);

-- One row per soft threshold crossed per budget period (the UNIQUE makes it idempotent),
-- written in the settle's transaction. The body is fixed at that time, so every retry sends
-- the same bytes. state: pending (due at next_attempt_us), delivered, failed (gave up), or
-- unsent (the budget has no webhook URL: the crossing is only recorded).
CREATE TABLE webhook_deliveries (
    id               TEXT PRIMARY KEY,
    event            TEXT NOT NULL,
    budget_id        TEXT NOT NULL,
    period_start_us  BIGINT NOT NULL,
    threshold_pct    BIGINT NOT NULL,
    url              TEXT,
    body             TEXT NOT NULL,
    state            TEXT NOT NULL,
    attempts         BIGINT NOT NULL DEFAULT 0,
    next_attempt_us  BIGINT,
    last_status      BIGINT,
    last_error       TEXT,
    created_us       BIGINT NOT NULL,
    delivered_us     BIGINT,
    UNIQUE (budget_id, period_start_us, threshold_pct)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_us) WHERE state = 'pending';
