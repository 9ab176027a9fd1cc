//! [`ScoreCache`] in a SQLite file (feature `sqlite`): one table, WAL journal, one transaction
//! per `put_many`.

use crate::cache::{CacheError, CacheKey, CachedNll, ScoreCache};
use rusqlite::{params, Connection, OptionalExtension};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// A score cache stored in a SQLite database file.
#[derive(Debug)]
pub struct SqliteCache {
    path: PathBuf,
    conn: Mutex<Connection>,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS selector_nll (
    base_fp    TEXT NOT NULL,
    model_fp   TEXT NOT NULL,
    content    TEXT NOT NULL,
    nll        REAL NOT NULL,
    tokens     INTEGER NOT NULL,
    PRIMARY KEY (base_fp, model_fp, content)
) WITHOUT ROWID;";

impl SqliteCache {
    /// Opens (creating if needed) the cache database at `path`.
    pub fn open(path: &Path) -> Result<Self, CacheError> {
        let err = |e: rusqlite::Error| CacheError {
            location: path.display().to_string(),
            message: e.to_string(),
        };
        let conn = Connection::open(path).map_err(err)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(err)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(err)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(err)?;
        conn.execute_batch(SCHEMA).map_err(err)?;
        Ok(SqliteCache {
            path: path.to_path_buf(),
            conn: Mutex::new(conn),
        })
    }

    fn error(&self, message: impl ToString) -> CacheError {
        CacheError {
            location: self.path.display().to_string(),
            message: message.to_string(),
        }
    }
}

impl ScoreCache for SqliteCache {
    fn get_many(&self, keys: &[CacheKey]) -> Result<HashMap<CacheKey, CachedNll>, CacheError> {
        let conn = self.conn.lock().map_err(|_| self.error("lock poisoned"))?;
        let mut stmt = conn
            .prepare_cached(
                "SELECT nll, tokens FROM selector_nll WHERE base_fp = ?1 AND model_fp = ?2 AND content = ?3",
            )
            .map_err(|e| self.error(e))?;
        let mut out = HashMap::new();
        for k in keys {
            let row = stmt
                .query_row(params![k.base, k.model, k.content], |r| {
                    Ok(CachedNll {
                        nll: r.get(0)?,
                        tokens: r.get(1)?,
                    })
                })
                .optional()
                .map_err(|e| self.error(e))?;
            if let Some(v) = row {
                out.insert(k.clone(), v);
            }
        }
        Ok(out)
    }

    fn put_many(&self, entries: &[(CacheKey, CachedNll)]) -> Result<(), CacheError> {
        let mut conn = self.conn.lock().map_err(|_| self.error("lock poisoned"))?;
        let tx = conn.transaction().map_err(|e| self.error(e))?;
        {
            let mut stmt = tx
                .prepare_cached(
                    "INSERT OR REPLACE INTO selector_nll (base_fp, model_fp, content, nll, tokens)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                )
                .map_err(|e| self.error(e))?;
            for (k, v) in entries {
                stmt.execute(params![k.base, k.model, k.content, v.nll, v.tokens])
                    .map_err(|e| self.error(e))?;
            }
        }
        tx.commit().map_err(|e| self.error(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::BASE_MODEL;

    fn key(model: &str, content: &str) -> CacheKey {
        CacheKey {
            base: "b1".into(),
            model: model.into(),
            content: content.into(),
        }
    }

    #[test]
    fn survives_reopen_and_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("scores.db");
        let v = CachedNll {
            nll: 2.25,
            tokens: 12,
        };
        {
            let c = SqliteCache::open(&path).unwrap();
            c.put_many(&[(key(BASE_MODEL, "h"), v), (key("a", "h"), v)])
                .unwrap();
        }
        let c = SqliteCache::open(&path).unwrap();
        let got = c
            .get_many(&[key(BASE_MODEL, "h"), key("a", "h"), key("a", "other")])
            .unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[&key("a", "h")], v);
        let w = CachedNll {
            nll: 3.0,
            tokens: 1,
        };
        c.put_many(&[(key("a", "h"), w)]).unwrap();
        assert_eq!(c.get_many(&[key("a", "h")]).unwrap()[&key("a", "h")], w);
    }

    #[test]
    fn open_error_names_the_path() {
        let err = SqliteCache::open(Path::new("/nonexistent-dir/x/scores.db")).unwrap_err();
        assert!(err
            .to_string()
            .starts_with("score cache /nonexistent-dir/x/scores.db:"));
    }
}
