//! The judge's durable cache: one SQLite file (WAL, shared by every worker on the machine),
//! keyed by the judge model and the sha256 of the filled-in judge prompt (which holds the
//! question and the answer). A judgement without a number is cached too (as NULL); failed
//! calls are not.

use rusqlite::{params, Connection, OptionalExtension};
use sha2::{Digest, Sha256};
use std::path::Path;
use std::time::Duration;

pub struct JudgeCache {
    conn: Connection,
}

fn key(prompt: &str) -> String {
    hex::encode(Sha256::digest(prompt.as_bytes()))
}

impl JudgeCache {
    /// Opens (creating) the cache at `path`.
    pub fn open(path: &Path) -> rusqlite::Result<JudgeCache> {
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let conn = Connection::open(path)?;
        conn.busy_timeout(Duration::from_secs(10))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS judge_scores (
                 model TEXT NOT NULL,
                 prompt_sha256 TEXT NOT NULL,
                 score REAL,
                 created_at INTEGER NOT NULL,
                 PRIMARY KEY (model, prompt_sha256)
             )",
        )?;
        Ok(JudgeCache { conn })
    }

    /// The cached judgement: `Some(score)` when cached (`score` itself may be `None`).
    pub fn get(&self, model: &str, prompt: &str) -> rusqlite::Result<Option<Option<f64>>> {
        self.conn
            .query_row(
                "SELECT score FROM judge_scores WHERE model = ?1 AND prompt_sha256 = ?2",
                params![model, key(prompt)],
                |r| r.get::<_, Option<f64>>(0),
            )
            .optional()
    }

    pub fn put(&self, model: &str, prompt: &str, score: Option<f64>) -> rusqlite::Result<()> {
        self.conn.execute(
            "INSERT OR REPLACE INTO judge_scores (model, prompt_sha256, score, created_at) \
             VALUES (?1, ?2, ?3, ?4)",
            params![model, key(prompt), score, crate::ids::now_unix()],
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn judgements_persist_per_model_and_prompt() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("c.sqlite");
        {
            let c = JudgeCache::open(&path).unwrap();
            assert_eq!(c.get("m", "p").unwrap(), None);
            c.put("m", "p", Some(42.5)).unwrap();
            c.put("m", "refused", None).unwrap();
        }
        let c = JudgeCache::open(&path).unwrap();
        assert_eq!(c.get("m", "p").unwrap(), Some(Some(42.5)));
        assert_eq!(c.get("m", "refused").unwrap(), Some(None));
        assert_eq!(c.get("other", "p").unwrap(), None);
    }
}
