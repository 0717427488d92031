-- Usage rollups: per-hour and per-day sums of usage_events, kept in the same transaction as
-- each event's insert (store/sql_reports.py: roll_up), so a month's report reads a few
-- thousand rows instead of millions of events and can never disagree with them.
-- Only sums are kept (latency percentiles need the raw events). Buckets are UTC and start at
-- a multiple of their width in microseconds since the epoch.
CREATE TABLE usage_rollup_hour (
    bucket_us         INTEGER NOT NULL,
    account_id        TEXT NOT NULL,
    api_key_id        TEXT NOT NULL,
    model             TEXT NOT NULL,
    upstream          TEXT NOT NULL,
    api               TEXT NOT NULL,
    status            TEXT NOT NULL,
    requests          INTEGER NOT NULL,
    errors            INTEGER NOT NULL,
    input_tokens      INTEGER NOT NULL,
    cached_tokens     INTEGER NOT NULL,
    output_tokens     INTEGER NOT NULL,
    reasoning_tokens  INTEGER NOT NULL,
    cost_nanos        INTEGER NOT NULL,
    latency_ms_sum    INTEGER NOT NULL,
    ttft_ms_sum       INTEGER NOT NULL,
    ttft_count        INTEGER NOT NULL,
    PRIMARY KEY (bucket_us, account_id, api_key_id, model, upstream, api, status)
);
CREATE INDEX usage_rollup_hour_account ON usage_rollup_hour (account_id, bucket_us);

CREATE TABLE usage_rollup_day (
    bucket_us         INTEGER NOT NULL,
    account_id        TEXT NOT NULL,
    api_key_id        TEXT NOT NULL,
    model             TEXT NOT NULL,
    upstream          TEXT NOT NULL,
    api               TEXT NOT NULL,
    status            TEXT NOT NULL,
    requests          INTEGER NOT NULL,
    errors            INTEGER NOT NULL,
    input_tokens      INTEGER NOT NULL,
    cached_tokens     INTEGER NOT NULL,
    output_tokens     INTEGER NOT NULL,
    reasoning_tokens  INTEGER NOT NULL,
    cost_nanos        INTEGER NOT NULL,
    latency_ms_sum    INTEGER NOT NULL,
    ttft_ms_sum       INTEGER NOT NULL,
    ttft_count        INTEGER NOT NULL,
    PRIMARY KEY (bucket_us, account_id, api_key_id, model, upstream, api, status)
);
CREATE INDEX usage_rollup_day_account ON usage_rollup_day (account_id, bucket_us);

-- Events recorded before this migration are rolled up once, here.
INSERT INTO usage_rollup_hour
SELECT created_us - created_us % 3600000000, account_id, api_key_id, model, upstream, api, status,
       COUNT(*), SUM(CASE WHEN status <> 'ok' THEN 1 ELSE 0 END), SUM(input_tokens),
       SUM(cached_tokens), SUM(output_tokens), SUM(reasoning_tokens), SUM(cost_nanos),
       SUM(latency_ms), COALESCE(SUM(ttft_ms), 0), COUNT(ttft_ms)
FROM usage_events
GROUP BY created_us - created_us % 3600000000, account_id, api_key_id, model, upstream, api, status;

INSERT INTO usage_rollup_day
SELECT bucket_us - bucket_us % 86400000000, account_id, api_key_id, model, upstream, api, status,
       SUM(requests), SUM(errors), SUM(input_tokens), SUM(cached_tokens), SUM(output_tokens),
       SUM(reasoning_tokens), SUM(cost_nanos), SUM(latency_ms_sum), SUM(ttft_ms_sum),
       SUM(ttft_count)
FROM usage_rollup_hour
GROUP BY bucket_us - bucket_us % 86400000000, account_id, api_key_id, model, upstream, api, status;

