//! Uploads and their parts for [`SqliteStore`].

use super::sqlite::{corrupt, SqliteStore, FILE_COLS};
use super::*;
use rusqlite::{params, OptionalExtension, Row};

const UPLOAD_COLS: &str =
    "id, tenant, bytes, created_at, expires_at, filename, mime_type, purpose, status, file_id, \
     file_expires_after, completed_part_ids";

fn upload_row(r: &Row<'_>) -> rusqlite::Result<(UploadRecord, String)> {
    let status: String = r.get(8)?;
    Ok((
        UploadRecord {
            id: r.get(0)?,
            tenant: r.get(1)?,
            bytes: r.get::<_, i64>(2)? as u64,
            created_at: r.get(3)?,
            expires_at: r.get(4)?,
            filename: r.get(5)?,
            mime_type: r.get(6)?,
            purpose: r.get(7)?,
            status: UploadStatus::parse(&status).unwrap_or(UploadStatus::Pending),
            file_id: r.get(9)?,
            file_expires_after: r.get(10)?,
            completed_part_ids: r
                .get::<_, Option<String>>(11)?
                .and_then(|s| serde_json::from_str(&s).ok()),
        },
        status,
    ))
}

/// The `completed_part_ids` column: a JSON array of part ids.
fn part_ids_json(ids: &[String]) -> String {
    serde_json::Value::from(ids).to_string()
}

fn check_upload((u, raw): (UploadRecord, String)) -> StoreResult<UploadRecord> {
    if UploadStatus::parse(&raw).is_none() {
        return Err(corrupt("uploads", "status", &u.id, raw));
    }
    Ok(u)
}

impl SqliteStore {
    pub(super) fn insert_upload_impl(&self, u: &UploadRecord) -> StoreResult<()> {
        self.conn()?.execute(
            &format!(
                "INSERT INTO uploads ({UPLOAD_COLS}) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12)"
            ),
            params![
                u.id,
                u.tenant,
                u.bytes as i64,
                u.created_at,
                u.expires_at,
                u.filename,
                u.mime_type,
                u.purpose,
                u.status.as_str(),
                u.file_id,
                u.file_expires_after,
                u.completed_part_ids.as_deref().map(part_ids_json)
            ],
        )?;
        Ok(())
    }

    pub(super) fn get_upload_impl(
        &self,
        tenant: &str,
        id: &str,
    ) -> StoreResult<Option<UploadRecord>> {
        let row = self
            .conn()?
            .query_row(
                &format!("SELECT {UPLOAD_COLS} FROM uploads WHERE id = ?1 AND tenant = ?2"),
                [id, tenant],
                upload_row,
            )
            .optional()?;
        row.map(check_upload).transpose()
    }

    pub(super) fn insert_part_impl(&self, p: &PartRecord) -> StoreResult<()> {
        self.conn()?.execute(
            "INSERT INTO parts (id, upload_id, created_at, bytes, blob_key) VALUES (?1,?2,?3,?4,?5)",
            params![p.id, p.upload_id, p.created_at, p.bytes as i64, p.blob_key],
        )?;
        Ok(())
    }

    pub(super) fn list_parts_impl(&self, upload_id: &str) -> StoreResult<Vec<PartRecord>> {
        let conn = self.conn()?;
        let mut stmt = conn.prepare(
            "SELECT id, upload_id, created_at, bytes, blob_key FROM parts WHERE upload_id = ?1 ORDER BY seq",
        )?;
        let rows = stmt.query_map([upload_id], |r| {
            Ok(PartRecord {
                id: r.get(0)?,
                upload_id: r.get(1)?,
                created_at: r.get(2)?,
                bytes: r.get::<_, i64>(3)? as u64,
                blob_key: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    pub(super) fn finish_upload_impl(
        &self,
        upload_id: &str,
        status: UploadStatus,
        file: Option<(&FileRecord, &[String])>,
    ) -> StoreResult<bool> {
        let conn = self.conn()?;
        let tx =
            rusqlite::Transaction::new_unchecked(&conn, rusqlite::TransactionBehavior::Immediate)?;
        let part_ids = file.map(|(_, ids)| part_ids_json(ids));
        let changed = tx.execute(
            "UPDATE uploads SET status = ?2, file_id = ?3, completed_part_ids = ?4 \
             WHERE id = ?1 AND status = 'pending'",
            params![
                upload_id,
                status.as_str(),
                file.map(|(f, _)| f.id.as_str()),
                part_ids
            ],
        )?;
        if changed == 1 {
            if let Some((f, _)) = file {
                tx.execute(
                    &format!("INSERT INTO files ({FILE_COLS}) VALUES (?1,?2,?3,?4,?5,?6,?7,?8)"),
                    params![
                        f.id,
                        f.tenant,
                        f.bytes as i64,
                        f.created_at,
                        f.filename,
                        f.purpose,
                        f.expires_at,
                        f.blob_key
                    ],
                )?;
            }
        }
        tx.commit()?;
        Ok(changed == 1)
    }

    pub(super) fn expire_uploads_impl(&self, now: i64) -> StoreResult<Vec<UploadRecord>> {
        let conn = self.conn()?;
        let tx =
            rusqlite::Transaction::new_unchecked(&conn, rusqlite::TransactionBehavior::Immediate)?;
        let expired = {
            let mut stmt = tx.prepare(&format!(
                "SELECT {UPLOAD_COLS} FROM uploads WHERE status = 'pending' AND expires_at <= ?1"
            ))?;
            let rows = stmt.query_map([now], upload_row)?;
            rows.collect::<Result<Vec<_>, _>>()?
        };
        tx.execute(
            "UPDATE uploads SET status = 'expired' WHERE status = 'pending' AND expires_at <= ?1",
            [now],
        )?;
        tx.commit()?;
        expired
            .into_iter()
            .map(check_upload)
            .map(|u| {
                u.map(|mut u| {
                    u.status = UploadStatus::Expired;
                    u
                })
            })
            .collect()
    }

    pub(super) fn finished_uploads_with_parts_impl(&self) -> StoreResult<Vec<String>> {
        let conn = self.conn()?;
        let mut stmt = conn.prepare(
            "SELECT DISTINCT p.upload_id FROM parts p JOIN uploads u ON u.id = p.upload_id WHERE u.status != 'pending'",
        )?;
        let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    pub(super) fn delete_parts_impl(&self, upload_id: &str) -> StoreResult<Vec<String>> {
        let keys: Vec<String> = self
            .list_parts(upload_id)?
            .into_iter()
            .map(|p| p.blob_key)
            .collect();
        self.conn()?
            .execute("DELETE FROM parts WHERE upload_id = ?1", [upload_id])?;
        Ok(keys)
    }
}
