//! Uploads and their parts for [`PgStore`].

use super::codec::{corrupt, part_ids_json};
use super::postgres::{insert_file, PgStore};
use super::*;
use ::postgres::Row;

const UPLOAD_COLS: &str =
    "id, tenant, bytes, created_at, expires_at, filename, mime_type, purpose, status, file_id, \
     file_expires_after, completed_part_ids";

fn upload_row(r: &Row) -> StoreResult<UploadRecord> {
    let id: String = r.try_get(0)?;
    let status: String = r.try_get(8)?;
    let status =
        UploadStatus::parse(&status).ok_or_else(|| corrupt("uploads", "status", &id, &status))?;
    Ok(UploadRecord {
        tenant: r.try_get(1)?,
        bytes: r.try_get::<_, i64>(2)? as u64,
        created_at: r.try_get(3)?,
        expires_at: r.try_get(4)?,
        filename: r.try_get(5)?,
        mime_type: r.try_get(6)?,
        purpose: r.try_get(7)?,
        status,
        file_id: r.try_get(9)?,
        file_expires_after: r.try_get(10)?,
        // As on SQLite: an unreadable list reads as none (the retry is then re-validated).
        completed_part_ids: r
            .try_get::<_, Option<String>>(11)?
            .and_then(|s| serde_json::from_str(&s).ok()),
        id,
    })
}

fn part_row(r: &Row) -> StoreResult<PartRecord> {
    Ok(PartRecord {
        id: r.try_get(0)?,
        upload_id: r.try_get(1)?,
        created_at: r.try_get(2)?,
        bytes: r.try_get::<_, i64>(3)? as u64,
        blob_key: r.try_get(4)?,
    })
}

impl PgStore {
    pub(super) fn insert_upload_impl(&self, u: &UploadRecord) -> StoreResult<()> {
        self.with(|c| {
            c.execute(
                format!(
                    "INSERT INTO uploads ({UPLOAD_COLS}) \
                     VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12)"
                )
                .as_str(),
                &[
                    &u.id,
                    &u.tenant,
                    &(u.bytes as i64),
                    &u.created_at,
                    &u.expires_at,
                    &u.filename,
                    &u.mime_type,
                    &u.purpose,
                    &u.status.as_str(),
                    &u.file_id,
                    &u.file_expires_after,
                    &u.completed_part_ids.as_deref().map(part_ids_json),
                ],
            )?;
            Ok(())
        })
    }

    pub(super) fn get_upload_impl(
        &self,
        tenant: &str,
        id: &str,
    ) -> StoreResult<Option<UploadRecord>> {
        self.with(|c| {
            c.query_opt(
                format!("SELECT {UPLOAD_COLS} FROM uploads WHERE id = $1 AND tenant = $2").as_str(),
                &[&id, &tenant],
            )?
            .as_ref()
            .map(upload_row)
            .transpose()
        })
    }

    pub(super) fn insert_part_impl(&self, p: &PartRecord) -> StoreResult<()> {
        self.with(|c| {
            c.execute(
                "INSERT INTO parts (id, upload_id, created_at, bytes, blob_key) \
                 VALUES ($1,$2,$3,$4,$5)",
                &[
                    &p.id,
                    &p.upload_id,
                    &p.created_at,
                    &(p.bytes as i64),
                    &p.blob_key,
                ],
            )?;
            Ok(())
        })
    }

    pub(super) fn list_parts_impl(&self, upload_id: &str) -> StoreResult<Vec<PartRecord>> {
        self.with(|c| {
            c.query(
                "SELECT id, upload_id, created_at, bytes, blob_key FROM parts \
                 WHERE upload_id = $1 ORDER BY seq",
                &[&upload_id],
            )?
            .iter()
            .map(part_row)
            .collect()
        })
    }

    pub(super) fn finish_upload_impl(
        &self,
        upload_id: &str,
        status: UploadStatus,
        file: Option<(&FileRecord, &[String])>,
    ) -> StoreResult<bool> {
        let part_ids = file.map(|(_, ids)| part_ids_json(ids));
        let file_id = file.map(|(f, _)| f.id.as_str());
        self.with(|c| {
            let mut tx = c.transaction()?;
            let changed = tx.execute(
                "UPDATE uploads SET status = $2, file_id = $3, completed_part_ids = $4 \
                 WHERE id = $1 AND status = 'pending'",
                &[&upload_id, &status.as_str(), &file_id, &part_ids],
            )?;
            if changed == 1 {
                if let Some((f, _)) = file {
                    insert_file(&mut tx, f)?;
                }
            }
            tx.commit()?;
            Ok(changed == 1)
        })
    }

    /// One statement: the rows it marks expired are the rows it returns, even with another
    /// replica's sweep running at the same moment (each upload is returned by one of them).
    pub(super) fn expire_uploads_impl(&self, now: i64) -> StoreResult<Vec<UploadRecord>> {
        self.with(|c| {
            c.query(
                format!(
                    "UPDATE uploads SET status = 'expired' \
                     WHERE status = 'pending' AND expires_at <= $1 RETURNING {UPLOAD_COLS}"
                )
                .as_str(),
                &[&now],
            )?
            .iter()
            .map(upload_row)
            .collect()
        })
    }

    pub(super) fn finished_uploads_with_parts_impl(&self) -> StoreResult<Vec<String>> {
        self.with(|c| {
            c.query(
                "SELECT DISTINCT p.upload_id FROM parts p JOIN uploads u ON u.id = p.upload_id \
                 WHERE u.status != 'pending'",
                &[],
            )?
            .iter()
            .map(|r| Ok(r.try_get(0)?))
            .collect()
        })
    }

    /// Removes the part rows and returns their blob keys in part order, in one statement.
    pub(super) fn delete_parts_impl(&self, upload_id: &str) -> StoreResult<Vec<String>> {
        self.with(|c| {
            c.query(
                "WITH gone AS (DELETE FROM parts WHERE upload_id = $1 RETURNING seq, blob_key) \
                 SELECT blob_key FROM gone ORDER BY seq",
                &[&upload_id],
            )?
            .iter()
            .map(|r| Ok(r.try_get(0)?))
            .collect()
        })
    }
}
