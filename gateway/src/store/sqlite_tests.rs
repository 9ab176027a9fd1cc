use super::*;
use serde_json::json;

fn file(id: &str, tenant: &str, purpose: &str) -> FileRecord {
    FileRecord {
        id: id.into(),
        tenant: tenant.into(),
        bytes: 3,
        created_at: 1,
        filename: "a.jsonl".into(),
        purpose: purpose.into(),
        expires_at: None,
        blob_key: id.into(),
    }
}

pub(crate) fn job(id: &str, tenant: &str, meta: &[(&str, &str)]) -> JobRecord {
    JobRecord {
        id: id.into(),
        tenant: tenant.into(),
        created_at: 10,
        model: "m".into(),
        training_file: "file-1".into(),
        validation_file: None,
        hyperparameters: json!({"n_epochs": "auto"}),
        method: json!({"type": "supervised"}),
        suffix: None,
        seed: 7,
        metadata: if meta.is_empty() {
            None
        } else {
            Some(
                meta.iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            )
        },
        status: JobStatus::ValidatingFiles,
        step: JobStep::Screen,
        error: None,
        fine_tuned_model: None,
        finished_at: None,
        trained_tokens: None,
        result_files: vec![],
        estimated_finish: None,
        pipeline: json!({}),
    }
}

fn event(id: &str, job: &str) -> EventRecord {
    EventRecord {
        id: id.into(),
        job_id: job.into(),
        created_at: 10,
        level: EventLevel::Info,
        message: format!("event {id}"),
        kind: "message".into(),
        data: None,
    }
}

#[test]
fn files_are_tenant_scoped_and_paged() {
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteStore::open(dir.path()).unwrap();
    for i in 0..5 {
        s.insert_file(&file(
            &format!("file-{i}"),
            "a",
            if i % 2 == 0 { "fine-tune" } else { "batch" },
        ))
        .unwrap();
    }
    s.insert_file(&file("file-x", "b", "fine-tune")).unwrap();
    assert!(s.get_file("b", "file-1").unwrap().is_none());
    let q = FileQuery {
        after: None,
        limit: 2,
        order: SortOrder::Desc,
        purpose: None,
    };
    let p = s.list_files("a", &q).unwrap();
    assert_eq!(
        p.data.iter().map(|f| f.id.as_str()).collect::<Vec<_>>(),
        ["file-4", "file-3"]
    );
    assert!(p.has_more);
    let q = FileQuery {
        after: Some("file-3".into()),
        limit: 10,
        order: SortOrder::Desc,
        purpose: Some("fine-tune".into()),
    };
    let p = s.list_files("a", &q).unwrap();
    assert_eq!(
        p.data.iter().map(|f| f.id.as_str()).collect::<Vec<_>>(),
        ["file-2", "file-0"]
    );
    assert!(!p.has_more);
    assert!(s.delete_file("b", "file-0").unwrap().is_none());
    assert!(s.delete_file("a", "file-0").unwrap().is_some());
    assert!(s.get_file("a", "file-0").unwrap().is_none());
}

#[test]
fn idempotency_key_with_other_fingerprint_conflicts() {
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteStore::open(dir.path()).unwrap();
    let key = |fp: &str| IdempotencyKey {
        scope: "a".into(),
        key: "header:k".into(),
        not_before: 0,
        fingerprint: Some(fp.into()),
    };
    let create = |id: &str, fp: &str| {
        s.create_job(
            &job(id, "a", &[]),
            &event(&format!("ev-{id}"), id),
            &[key(fp)],
        )
        .unwrap()
    };
    assert_eq!(create("ftjob-1", "aaa"), CreateOutcome::Created);
    assert_eq!(
        create("ftjob-2", "aaa"),
        CreateOutcome::Existing("ftjob-1".into())
    );
    assert_eq!(
        create("ftjob-3", "bbb"),
        CreateOutcome::Conflict("ftjob-1".into())
    );
    assert!(s.get_job_any("ftjob-3").unwrap().is_none());
}

#[test]
fn idempotency_returns_existing_job_within_window() {
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteStore::open(dir.path()).unwrap();
    let key = IdempotencyKey {
        scope: "a".into(),
        key: "k1".into(),
        not_before: 0,
        fingerprint: None,
    };
    let out = s
        .create_job(
            &job("ftjob-1", "a", &[]),
            &event("ftevent-1", "ftjob-1"),
            std::slice::from_ref(&key),
        )
        .unwrap();
    assert_eq!(out, CreateOutcome::Created);
    let out = s
        .create_job(
            &job("ftjob-2", "a", &[]),
            &event("ftevent-2", "ftjob-2"),
            std::slice::from_ref(&key),
        )
        .unwrap();
    assert_eq!(out, CreateOutcome::Existing("ftjob-1".into()));
    assert!(s.get_job_any("ftjob-2").unwrap().is_none());
    // outside the window the key no longer dedupes
    let stale = IdempotencyKey {
        not_before: 11,
        ..key
    };
    let out = s
        .create_job(
            &job("ftjob-3", "a", &[]),
            &event("ftevent-3", "ftjob-3"),
            &[stale],
        )
        .unwrap();
    assert_eq!(out, CreateOutcome::Created);
}

#[test]
fn jobs_filter_by_metadata_and_update_is_conditional() {
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteStore::open(dir.path()).unwrap();
    s.create_job(
        &job("ftjob-1", "a", &[("team", "x")]),
        &event("ftevent-1", "ftjob-1"),
        &[],
    )
    .unwrap();
    s.create_job(
        &job("ftjob-2", "a", &[("team", "y")]),
        &event("ftevent-2", "ftjob-2"),
        &[],
    )
    .unwrap();
    s.create_job(
        &job("ftjob-3", "b", &[("team", "x")]),
        &event("ftevent-3", "ftjob-3"),
        &[],
    )
    .unwrap();
    let q = JobQuery {
        after: None,
        limit: 10,
        metadata: [("team".to_string(), "x".to_string())].into(),
    };
    let p = s.list_jobs("a", &q).unwrap();
    assert_eq!(p.data.len(), 1);
    assert_eq!(p.data[0].id, "ftjob-1");

    let mut j = s.get_job("a", "ftjob-1").unwrap().unwrap();
    j.status = JobStatus::Cancelled;
    assert!(s
        .update_job(
            &j,
            JobStatus::ValidatingFiles,
            &[event("ftevent-9", "ftjob-1")]
        )
        .unwrap());
    j.status = JobStatus::Running;
    assert!(!s
        .update_job(
            &j,
            JobStatus::ValidatingFiles,
            &[event("ftevent-10", "ftjob-1")]
        )
        .unwrap());
    let got = s.get_job("a", "ftjob-1").unwrap().unwrap();
    assert_eq!(got.status, JobStatus::Cancelled);
    let ev = s.list_events("ftjob-1", None, 10).unwrap();
    assert_eq!(
        ev.data.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(),
        ["ftevent-9", "ftevent-1"]
    );
    assert_eq!(s.active_jobs().unwrap().len(), 2);
}

#[test]
fn reopen_keeps_data_and_uploads_expire() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = SqliteStore::open(dir.path()).unwrap();
        s.insert_upload(&UploadRecord {
            id: "upload_1".into(),
            tenant: "a".into(),
            bytes: 10,
            created_at: 0,
            expires_at: 100,
            filename: "f".into(),
            mime_type: "text/jsonl".into(),
            purpose: "fine-tune".into(),
            status: UploadStatus::Pending,
            file_id: None,
            file_expires_after: Some(3600),
            completed_part_ids: None,
        })
        .unwrap();
        s.insert_part(&PartRecord {
            id: "part_1".into(),
            upload_id: "upload_1".into(),
            created_at: 0,
            bytes: 5,
            blob_key: "part_1".into(),
        })
        .unwrap();
    }
    let s = SqliteStore::open(dir.path()).unwrap();
    assert!(s.expire_uploads(99).unwrap().is_empty());
    let expired = s.expire_uploads(100).unwrap();
    assert_eq!(expired.len(), 1);
    assert_eq!(expired[0].file_expires_after, Some(3600));
    assert_eq!(
        s.get_upload("a", "upload_1").unwrap().unwrap().status,
        UploadStatus::Expired
    );
    assert!(!s
        .finish_upload("upload_1", UploadStatus::Cancelled, None)
        .unwrap());
    assert_eq!(
        s.delete_parts("upload_1").unwrap(),
        vec!["part_1".to_string()]
    );
    assert!(s.referenced_blob_keys().unwrap().is_empty());
}

/// A cursor that names no object of the list is an error (the API's 400 on `after`), never a
/// silent restart from the newest item; another tenant's or job's id is the same error.
#[test]
fn unknown_or_foreign_cursors_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteStore::open(dir.path()).unwrap();
    s.insert_file(&file("file-a", "a", "fine-tune")).unwrap();
    s.insert_file(&file("file-b", "b", "fine-tune")).unwrap();
    s.create_job(
        &job("ftjob-a", "a", &[]),
        &event("ftevent-a", "ftjob-a"),
        &[],
    )
    .unwrap();
    s.create_job(
        &job("ftjob-b", "b", &[]),
        &event("ftevent-b", "ftjob-b"),
        &[],
    )
    .unwrap();
    let files = |after: &str| {
        s.list_files(
            "a",
            &FileQuery {
                after: Some(after.into()),
                limit: 10,
                order: SortOrder::Desc,
                purpose: None,
            },
        )
    };
    assert!(files("file-a").unwrap().data.is_empty());
    for bad in ["file-b", "file-nope"] {
        match files(bad) {
            Err(StoreError::UnknownCursor(id)) => assert_eq!(id, bad),
            other => panic!("{bad}: {other:?}"),
        }
    }
    let jobs = |after: &str| {
        s.list_jobs(
            "a",
            &JobQuery {
                after: Some(after.into()),
                limit: 10,
                metadata: Default::default(),
            },
        )
    };
    assert!(jobs("ftjob-a").unwrap().data.is_empty());
    assert!(matches!(jobs("ftjob-b"), Err(StoreError::UnknownCursor(_))));
    assert!(matches!(
        jobs("ftjob-nope"),
        Err(StoreError::UnknownCursor(_))
    ));
    assert!(s
        .list_events("ftjob-a", Some("ftevent-a"), 10)
        .unwrap()
        .data
        .is_empty());
    assert!(matches!(
        s.list_events("ftjob-a", Some("ftevent-b"), 10),
        Err(StoreError::UnknownCursor(_))
    ));
    assert!(matches!(
        s.list_checkpoints("ftjob-a", Some("ftckpt-nope"), 10),
        Err(StoreError::UnknownCursor(_))
    ));
}

#[test]
fn a_status_change_decided_on_an_old_step_does_not_rewind_the_job() {
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteStore::open(dir.path()).unwrap();
    let j = job("ftjob-1", "a", &[]);
    s.create_job(&j, &event("ftevent-1", "ftjob-1"), &[])
        .unwrap();
    // The runner moves Screen -> Transform; the status stays validating_files.
    let moved = JobRecord {
        step: JobStep::Transform,
        ..j.clone()
    };
    assert!(s
        .update_job(&moved, JobStatus::ValidatingFiles, &[])
        .unwrap());
    // A pause decided on the job as read before that move must not apply...
    let stale = StatusChange {
        job_id: "ftjob-1".into(),
        expected: JobStatus::ValidatingFiles,
        expected_step: JobStep::Screen,
        status: JobStatus::Paused,
        step: JobStep::Screen,
        finished_at: None,
    };
    assert!(!s
        .set_job_status(&stale, &event("ftevent-2", "ftjob-1"))
        .unwrap());
    let now = s.get_job_any("ftjob-1").unwrap().unwrap();
    assert_eq!(
        (now.status, now.step),
        (JobStatus::ValidatingFiles, JobStep::Transform)
    );
    // ...while one decided on the current step does.
    let fresh = StatusChange {
        expected_step: JobStep::Transform,
        step: JobStep::Transform,
        ..stale
    };
    assert!(s
        .set_job_status(&fresh, &event("ftevent-3", "ftjob-1"))
        .unwrap());
    let now = s.get_job_any("ftjob-1").unwrap().unwrap();
    assert_eq!(
        (now.status, now.step),
        (JobStatus::Paused, JobStep::Transform)
    );
}

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

fn local_job(store: &SqliteStore, id: &str, tenant: &str, seq_time: i64) {
    let mut j = job(id, tenant, &[]);
    j.created_at = seq_time;
    j.status = JobStatus::Running;
    j.step = JobStep::Run;
    j.pipeline = json!({"exec_state": {"backend": "local"}});
    let ev = event(&format!("ev-{id}"), id);
    store.create_job(&j, &ev, &[]).unwrap();
}

#[test]
fn leases_are_exclusive_expire_and_alternate_between_tenants() {
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteStore::open(dir.path()).unwrap();
    // acme queues three jobs before beta's one; beta must not wait for all of acme's.
    local_job(&s, "a1", "acme", 1);
    local_job(&s, "a2", "acme", 2);
    local_job(&s, "a3", "acme", 3);
    local_job(&s, "b1", "beta", 4);
    // A job not marked local is never claimed.
    let mut other = job("up", "acme", &[]);
    other.status = JobStatus::Running;
    other.step = JobStep::Run;
    other.pipeline = json!({"exec_state": {"upstream_id": "x"}});
    s.create_job(&other, &event("ev-up", "up"), &[]).unwrap();

    let now = 100;
    let first = s.claim_local_job("w1", now, 30).unwrap().unwrap();
    assert_eq!(first.job.id, "a1");
    assert_eq!(first.takeover_from, None);
    let second = s.claim_local_job("w2", now, 30).unwrap().unwrap();
    assert_eq!(second.job.id, "b1", "round-robin: beta next");
    let third = s.claim_local_job("w3", now, 30).unwrap().unwrap();
    assert_eq!(third.job.id, "a2");
    // Held leases are not claimed again; a heartbeat keeps a lease alive.
    assert!(s.heartbeat_lease("a1", "w1", now + 20, 30).unwrap());
    assert!(
        !s.heartbeat_lease("a1", "w2", now + 20, 30).unwrap(),
        "only the holder renews"
    );
    // At now+40 the leases of b1 and a2 (to now+30) have lapsed; a1's runs to now+50.
    // beta was served longest ago, so its expired job is taken over first.
    let fourth = s.claim_local_job("w4", now + 40, 30).unwrap().unwrap();
    assert_eq!(fourth.job.id, "b1");
    assert_eq!(fourth.takeover_from.as_deref(), Some("w2"));
    // A released lease frees the job at once.
    s.release_lease("a1", "w1").unwrap();
    assert!(s.lease_of("a1").unwrap().is_none());
    let order: Vec<(String, Option<String>)> =
        std::iter::from_fn(|| s.claim_local_job("w5", now + 45, 30).unwrap())
            .map(|c| (c.job.id, c.takeover_from))
            .collect();
    assert_eq!(
        order,
        vec![
            ("a1".to_string(), None),
            ("a2".to_string(), Some("w3".to_string())),
            ("a3".to_string(), None),
        ]
    );
    assert!(
        !s.heartbeat_lease("b1", "w2", now + 46, 30).unwrap(),
        "w2 lost b1 to w4"
    );
}
