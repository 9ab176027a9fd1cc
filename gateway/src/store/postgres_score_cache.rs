//! The selector's [`ScoreCache`] in the PostgreSQL store's database (table `score_cache`,
//! migration v3), on the store's own connection pool: with `[storage] backend = "postgres"`
//! every gateway replica reads the NLLs any of them scored, so a pool is scored once for the
//! whole deployment. Reached through [`super::Store::score_cache`].
//!
//! `get_many` asks in batches of [`GET_BATCH`] keys (three parallel `text[]` arrays, unnested
//! and matched as a row), `put_many` upserts in one transaction (`INSERT … ON CONFLICT … DO
//! UPDATE`), in key order so two replicas writing overlapping keys lock rows in the same order.
//! `nll` is `DOUBLE PRECISION`, sent and read in binary: an f64 comes back bit for bit.

use super::postgres::blocking;
use super::postgres_pool::Pool;
use selector::{CacheError, CacheKey, CachedNll, ScoreCache};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// Keys per `get_many` query (and entries per upsert statement): one round trip each.
pub(super) const GET_BATCH: usize = 1000;

/// Named in every error; never the URL (it may carry the password).
const LOCATION: &str = "postgres table score_cache";

pub struct PgScoreCache {
    pool: Arc<Pool>,
}

impl PgScoreCache {
    pub(super) fn new(pool: Arc<Pool>) -> PgScoreCache {
        PgScoreCache { pool }
    }
}

fn error(message: impl std::fmt::Display) -> CacheError {
    CacheError {
        location: LOCATION.into(),
        message: message.to_string(),
    }
}

impl ScoreCache for PgScoreCache {
    fn get_many(&self, keys: &[CacheKey]) -> Result<HashMap<CacheKey, CachedNll>, CacheError> {
        let mut out = HashMap::new();
        if keys.is_empty() {
            return Ok(out);
        }
        blocking(|| {
            let mut conn = self.pool.get().map_err(error)?;
            let stmt = conn
                .prepare(
                    "SELECT base, model, content, nll, tokens FROM score_cache \
                     WHERE (base, model, content) IN \
                     (SELECT * FROM unnest($1::text[], $2::text[], $3::text[]))",
                )
                .map_err(error)?;
            for chunk in keys.chunks(GET_BATCH) {
                let bases: Vec<&str> = chunk.iter().map(|k| k.base.as_str()).collect();
                let models: Vec<&str> = chunk.iter().map(|k| k.model.as_str()).collect();
                let contents: Vec<&str> = chunk.iter().map(|k| k.content.as_str()).collect();
                for r in conn
                    .query(&stmt, &[&bases, &models, &contents])
                    .map_err(error)?
                {
                    let key = CacheKey {
                        base: r.try_get(0).map_err(error)?,
                        model: r.try_get(1).map_err(error)?,
                        content: r.try_get(2).map_err(error)?,
                    };
                    let tokens: i32 = r.try_get(4).map_err(error)?;
                    let tokens = u32::try_from(tokens).map_err(|_| {
                        error(format!(
                            "corrupt row {}/{}/{}: tokens {tokens}",
                            key.base, key.model, key.content
                        ))
                    })?;
                    let nll = r.try_get(3).map_err(error)?;
                    out.insert(key, CachedNll { nll, tokens });
                }
            }
            Ok(out)
        })
    }

    fn put_many(&self, entries: &[(CacheKey, CachedNll)]) -> Result<(), CacheError> {
        // One row per key, the last entry winning (as a sequence of single writes would); in
        // key order, the same on every replica.
        let rows: BTreeMap<(&str, &str, &str), &CachedNll> = entries
            .iter()
            .map(|(k, v)| ((k.base.as_str(), k.model.as_str(), k.content.as_str()), v))
            .collect();
        if rows.is_empty() {
            return Ok(());
        }
        let rows: Vec<_> = rows.into_iter().collect();
        blocking(|| {
            let mut conn = self.pool.get().map_err(error)?;
            let mut tx = conn.transaction().map_err(error)?;
            let stmt = tx
                .prepare(
                    "INSERT INTO score_cache (base, model, content, nll, tokens) \
                     SELECT * FROM unnest($1::text[], $2::text[], $3::text[], \
                                          $4::float8[], $5::int4[]) \
                     ON CONFLICT (base, model, content) \
                     DO UPDATE SET nll = EXCLUDED.nll, tokens = EXCLUDED.tokens",
                )
                .map_err(error)?;
            for chunk in rows.chunks(GET_BATCH) {
                let bases: Vec<&str> = chunk.iter().map(|((b, _, _), _)| *b).collect();
                let models: Vec<&str> = chunk.iter().map(|((_, m, _), _)| *m).collect();
                let contents: Vec<&str> = chunk.iter().map(|((_, _, c), _)| *c).collect();
                let nlls: Vec<f64> = chunk.iter().map(|(_, v)| v.nll).collect();
                let tokens = chunk
                    .iter()
                    .map(|(_, v)| {
                        i32::try_from(v.tokens)
                            .map_err(|_| error(format!("tokens {} out of range", v.tokens)))
                    })
                    .collect::<Result<Vec<i32>, _>>()?;
                tx.execute(&stmt, &[&bases, &models, &contents, &nlls, &tokens])
                    .map_err(error)?;
            }
            tx.commit().map_err(error)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::pg_test_server::fresh_database;
    use super::super::postgres::PgOptions;
    use super::super::{PgStore, SqliteStore, Store};
    use super::*;
    use selector::BASE_MODEL;

    /// A store (a replica: its own pool) on `url`, and its score cache.
    fn replica(url: &str) -> (PgStore, Arc<dyn ScoreCache>) {
        let store = PgStore::open(&PgOptions {
            url: url.to_string(),
            pool_size: 2,
            ca_file: None,
        })
        .unwrap();
        let cache = store
            .score_cache()
            .expect("a PostgreSQL store shares its cache");
        (store, cache)
    }

    fn key(model: &str, content: &str) -> CacheKey {
        CacheKey {
            base: "b1".into(),
            model: model.into(),
            content: content.into(),
        }
    }

    fn nll(nll: f64, tokens: u32) -> CachedNll {
        CachedNll { nll, tokens }
    }

    #[test]
    fn puts_and_gets_exactly() {
        let Some(url) = fresh_database() else { return };
        let (_store, c) = replica(&url);
        assert!(c.get_many(&[]).unwrap().is_empty());
        c.put_many(&[]).unwrap();
        let exact = 0.1 + 0.2; // 0.30000000000000004
        let tiny = f64::from_bits(1); // the smallest subnormal
        c.put_many(&[
            (key(BASE_MODEL, "h1"), nll(exact, 7)),
            (key("evil", "h1"), nll(tiny, u32::MAX >> 1)),
            (key("evil", "h2"), nll(-0.0, 0)),
        ])
        .unwrap();
        let got = c
            .get_many(&[
                key(BASE_MODEL, "h1"),
                key("evil", "h1"),
                key("evil", "h2"),
                key("evil", "missing"),
                key(BASE_MODEL, "h1"),
            ])
            .unwrap();
        assert_eq!(got.len(), 3, "the miss is simply absent");
        assert_eq!(got[&key(BASE_MODEL, "h1")].nll.to_bits(), exact.to_bits());
        assert_eq!(got[&key(BASE_MODEL, "h1")].tokens, 7);
        assert_eq!(got[&key("evil", "h1")].nll.to_bits(), 1);
        assert_eq!(got[&key("evil", "h1")].tokens, u32::MAX >> 1);
        assert_eq!(got[&key("evil", "h2")].nll.to_bits(), (-0.0f64).to_bits());
        // Replaced: a later put wins, and within one put the last entry for a key wins.
        c.put_many(&[
            (key("evil", "h1"), nll(9.0, 1)),
            (key("evil", "h1"), nll(2.5, 3)),
        ])
        .unwrap();
        let got = c.get_many(&[key("evil", "h1")]).unwrap();
        assert_eq!(got[&key("evil", "h1")], nll(2.5, 3));
        // A token count PostgreSQL's INTEGER cannot hold is refused, not truncated.
        let e = c
            .put_many(&[(key("evil", "big"), nll(1.0, u32::MAX))])
            .unwrap_err();
        assert!(e.to_string().starts_with("score cache postgres"), "{e}");
    }

    #[test]
    fn many_keys_in_one_call() {
        let Some(url) = fresh_database() else { return };
        let (_store, c) = replica(&url);
        let n = 2 * GET_BATCH + 500;
        let entries: Vec<_> = (0..n)
            .map(|i| (key("a", &format!("h{i}")), nll(i as f64 / 3.0, i as u32)))
            .collect();
        c.put_many(&entries).unwrap();
        // Every stored key plus as many misses, in one call.
        let keys: Vec<_> = (0..2 * n).map(|i| key("a", &format!("h{i}"))).collect();
        let got = c.get_many(&keys).unwrap();
        assert_eq!(got.len(), n);
        for (k, v) in &entries {
            assert_eq!(got[k].nll.to_bits(), v.nll.to_bits());
            assert_eq!(got[k].tokens, v.tokens);
        }
    }

    #[test]
    fn two_replicas_share_scores() {
        let Some(url) = fresh_database() else { return };
        let (_one, a) = replica(&url);
        let (_two, b) = replica(&url);
        a.put_many(&[(key(BASE_MODEL, "h"), nll(1.25, 4))]).unwrap();
        assert_eq!(
            b.get_many(&[key(BASE_MODEL, "h")]).unwrap()[&key(BASE_MODEL, "h")],
            nll(1.25, 4)
        );
        b.put_many(&[
            (key(BASE_MODEL, "h"), nll(1.5, 5)),
            (key("evil", "h"), nll(3.0, 4)),
        ])
        .unwrap();
        let got = a
            .get_many(&[key(BASE_MODEL, "h"), key("evil", "h")])
            .unwrap();
        assert_eq!(got[&key(BASE_MODEL, "h")], nll(1.5, 5));
        assert_eq!(got[&key("evil", "h")], nll(3.0, 4));
        // Racing writers on overlapping keys both succeed (rows locked in one order).
        let entries: Vec<_> = (0..500)
            .map(|i| (key("r", &format!("h{i}")), nll(i as f64, 1)))
            .collect();
        let reversed: Vec<_> = entries.iter().rev().cloned().collect();
        std::thread::scope(|s| {
            let x = s.spawn(|| a.put_many(&entries));
            let y = s.spawn(|| b.put_many(&reversed));
            x.join().unwrap().unwrap();
            y.join().unwrap().unwrap();
        });
        let keys: Vec<_> = entries.iter().map(|(k, _)| k.clone()).collect();
        assert_eq!(a.get_many(&keys).unwrap().len(), 500);
    }

    #[test]
    fn a_sqlite_store_has_no_shared_cache() {
        let dir = tempfile::tempdir().unwrap();
        assert!(SqliteStore::open(dir.path())
            .unwrap()
            .score_cache()
            .is_none());
    }
}
