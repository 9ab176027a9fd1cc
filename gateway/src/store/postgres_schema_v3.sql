-- v3: the selector's score cache (Interleaving+ / ++ pool NLLs) on the shared database, so
-- every gateway replica reuses the others' scores (`store::PgScoreCache`). A key is (base
-- fingerprint with the scoring settings, model fingerprint — `base` or an adapter's —, pool
-- item content hash); `nll` is the answer-only mean NLL, DOUBLE PRECISION so an f64 reads back
-- bit for bit. A SQLite deployment keeps the selector's own cache file instead.
CREATE TABLE score_cache (
    base TEXT NOT NULL,
    model TEXT NOT NULL,
    content TEXT NOT NULL,
    nll DOUBLE PRECISION NOT NULL,
    tokens INTEGER NOT NULL,
    PRIMARY KEY (base, model, content)
);
