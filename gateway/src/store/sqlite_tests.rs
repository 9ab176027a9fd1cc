//! SQLite-only tests (its migrations from older files). Everything both backends must do is in
//! the shared contract suite, `store::contract_tests`.

use super::*;

#[test]
fn a_v1_database_migrates_keeping_its_uploads() {
    let dir = tempfile::tempdir().unwrap();
    {
        let conn = rusqlite::Connection::open(dir.path().join("tuneguard.db")).unwrap();
        conn.execute_batch(include_str!("schema_v1.sql")).unwrap();
        conn.pragma_update(None, "user_version", 1).unwrap();
        conn.execute(
            "INSERT INTO uploads (id, tenant, bytes, created_at, expires_at, filename, mime_type, \
             purpose, status, file_id) VALUES ('upload_1','a',10,0,100,'f','text/jsonl','fine-tune','pending',NULL)",
            [],
        )
        .unwrap();
    }
    let s = SqliteStore::open(dir.path()).unwrap();
    let u = s.get_upload("a", "upload_1").unwrap().unwrap();
    assert_eq!(
        (
            u.bytes,
            u.status,
            u.file_expires_after,
            u.completed_part_ids
        ),
        (10, UploadStatus::Pending, None, None)
    );
}
