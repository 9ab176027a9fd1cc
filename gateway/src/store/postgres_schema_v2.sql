-- v2: a checkpoint's artifact — the blob key of its adapter (a tar of the PEFT directory), so
-- the adapter is served from the blob store, not from the directory of the worker that wrote
-- it. NULL for checkpoints mirrored before v2 and for upstream checkpoints.
ALTER TABLE checkpoints ADD COLUMN artifact TEXT;
-- Store-wide counters every process adds to in its own transactions (`lease_takeovers`: a
-- claim that took a job over from a worker whose lease had expired), read by the gateway at
-- each scrape.
CREATE TABLE counters (name TEXT PRIMARY KEY, value BIGINT NOT NULL);
