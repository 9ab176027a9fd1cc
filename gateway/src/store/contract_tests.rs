//! The `Store` contract: every test here runs against SQLite (`contract_tests::sqlite::*`)
//! and against a real PostgreSQL server (`contract_tests::postgres::*`, see
//! [`super::pg_test_server`]), so the two backends are held to one behaviour. A test opens
//! its backend through [`Backend::open`] — more than once where it matters: a reopen, or two
//! stores on one database standing for two processes racing each other.

use super::*;
use serde_json::json;
use std::sync::{Arc, Barrier};

/// A place a store lives; every `open` is a new store (process) on the same data.
trait Backend: Sync {
    fn open(&self) -> Arc<dyn Store>;
}

struct SqliteBackend(tempfile::TempDir);

impl Backend for SqliteBackend {
    fn open(&self) -> Arc<dyn Store> {
        Arc::new(SqliteStore::open(self.0.path()).unwrap())
    }
}

struct PgBackend(String);

impl Backend for PgBackend {
    fn open(&self) -> Arc<dyn Store> {
        let options = super::postgres::PgOptions {
            url: self.0.clone(),
            pool_size: 4,
            ca_file: None,
        };
        Arc::new(PgStore::open(&options).unwrap())
    }
}

/// Declares each contract test once per backend.
macro_rules! contract {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[test]
                fn $name() {
                    super::$name(&super::SqliteBackend(tempfile::tempdir().unwrap()));
                }
            )*
        }
        mod postgres {
            $(
                #[test]
                fn $name() {
                    if let Some(url) = super::super::pg_test_server::fresh_database() {
                        super::$name(&super::PgBackend(url));
                    }
                }
            )*
        }
    };
}

contract!(
    files_are_tenant_scoped_and_paged,
    expired_files_are_hidden_at_once_and_deleted_by_the_sweep,
    idempotency_key_with_other_fingerprint_conflicts,
    idempotency_returns_existing_job_within_window,
    a_body_match_never_replays_a_dead_job,
    racing_creates_with_one_key_make_one_job,
    jobs_filter_by_metadata_and_update_is_conditional,
    job_list_pages_through_a_sparse_metadata_filter,
    records_round_trip_exactly,
    reopen_keeps_data_and_uploads_expire,
    an_upload_completes_once_into_a_file,
    unknown_or_foreign_cursors_are_errors,
    events_and_checkpoints_page_newest_first,
    a_model_is_listed_to_its_tenant_once_served,
    owed_cancels_are_cancelled_jobs_at_the_cancel_step,
    one_replica_drives_a_job_until_its_lease_runs_out,
    a_refused_poll_stores_no_checkpoint,
    a_status_change_decided_on_an_old_step_does_not_rewind_the_job,
    a_status_change_clears_the_estimated_finish,
    two_runners_that_read_one_revision_record_it_once,
    racing_status_changes_apply_once,
    policy_snapshots_are_write_once,
    leases_are_exclusive_expire_and_alternate_between_tenants,
    racing_claims_take_each_job_once_in_tenant_turns,
    a_heartbeat_and_a_takeover_never_both_win,
);

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

fn job(id: &str, tenant: &str, meta: &[(&str, &str)]) -> JobRecord {
    JobRecord {
        revision: 0,
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
        pipeline: Pipeline::default(),
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

fn checkpoint(id: &str, job: &str, step: i64) -> CheckpointRecord {
    CheckpointRecord {
        id: id.into(),
        job_id: job.into(),
        created_at: 20 + step,
        fine_tuned_model_checkpoint: format!("ft:m:acme::{job}:ckpt-step-{step}"),
        step_number: step,
        metrics: json!({"step": step, "train_loss": 0.5}),
        artifact: None,
    }
}

fn upload(id: &str, tenant: &str, expires_at: i64) -> UploadRecord {
    UploadRecord {
        id: id.into(),
        tenant: tenant.into(),
        bytes: 10,
        created_at: 0,
        expires_at,
        filename: "f".into(),
        mime_type: "text/jsonl".into(),
        purpose: "fine-tune".into(),
        status: UploadStatus::Pending,
        file_id: None,
        file_expires_after: Some(3600),
        completed_part_ids: None,
    }
}

fn part(id: &str, upload_id: &str) -> PartRecord {
    PartRecord {
        id: id.into(),
        upload_id: upload_id.into(),
        created_at: 0,
        bytes: 5,
        blob_key: format!("blob-{id}"),
    }
}

fn ids<T>(items: &[T], id: impl Fn(&T) -> &str) -> Vec<String> {
    items.iter().map(|x| id(x).to_string()).collect()
}

fn file_page(s: &dyn Store, tenant: &str, q: FileQuery) -> Vec<String> {
    ids(&s.list_files(tenant, &q).unwrap().data, |f| &f.id)
}

fn files_are_tenant_scoped_and_paged(b: &dyn Backend) {
    let s = b.open();
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
    assert_eq!(s.get_file("a", "file-1").unwrap().unwrap().purpose, "batch");
    let q = FileQuery {
        after: None,
        limit: 2,
        order: SortOrder::Desc,
        purpose: None,
    };
    let p = s.list_files("a", &q).unwrap();
    assert_eq!(ids(&p.data, |f| &f.id), ["file-4", "file-3"]);
    assert!(p.has_more);
    let q = FileQuery {
        after: Some("file-3".into()),
        limit: 10,
        order: SortOrder::Desc,
        purpose: Some("fine-tune".into()),
    };
    let p = s.list_files("a", &q).unwrap();
    assert_eq!(ids(&p.data, |f| &f.id), ["file-2", "file-0"]);
    assert!(!p.has_more);
    let asc = |after: Option<&str>, limit| FileQuery {
        after: after.map(Into::into),
        limit,
        order: SortOrder::Asc,
        purpose: None,
    };
    assert_eq!(
        file_page(&*s, "a", asc(None, 3)),
        ["file-0", "file-1", "file-2"]
    );
    assert_eq!(
        file_page(&*s, "a", asc(Some("file-2"), 3)),
        ["file-3", "file-4"]
    );
    assert_eq!(file_page(&*s, "b", asc(None, 10)), ["file-x"]);
    // An exactly full page says there is no more.
    let p = s.list_files("a", &asc(Some("file-2"), 2)).unwrap();
    assert!(!p.has_more);
    assert!(s.delete_file("b", "file-0").unwrap().is_none());
    assert_eq!(
        s.delete_file("a", "file-0").unwrap(),
        Some(file("file-0", "a", "fine-tune"))
    );
    assert!(s.get_file("a", "file-0").unwrap().is_none());
    assert!(s.delete_file("a", "file-0").unwrap().is_none());
}

fn expired_files_are_hidden_at_once_and_deleted_by_the_sweep(b: &dyn Backend) {
    let s = b.open();
    let far = 4_000_000_000;
    let mut past = file("file-past", "a", "fine-tune");
    past.expires_at = Some(5);
    let mut future = file("file-future", "a", "fine-tune");
    future.expires_at = Some(far);
    s.insert_file(&past).unwrap();
    s.insert_file(&future).unwrap();
    s.insert_file(&file("file-forever", "a", "fine-tune"))
        .unwrap();
    // Past its expiry a file is gone for clients before any sweep runs...
    assert!(s.get_file("a", "file-past").unwrap().is_none());
    let q = FileQuery {
        after: None,
        limit: 10,
        order: SortOrder::Asc,
        purpose: None,
    };
    assert_eq!(file_page(&*s, "a", q), ["file-future", "file-forever"]);
    // ...but its row (and blob key) stays until the sweep deletes it.
    assert!(s
        .referenced_blob_keys()
        .unwrap()
        .contains(&"file-past".to_string()));
    assert!(s.delete_expired_files(4).unwrap().is_empty());
    assert_eq!(s.delete_expired_files(5).unwrap(), vec![past]);
    assert_eq!(s.delete_expired_files(far).unwrap(), vec![future]);
    assert!(s.delete_expired_files(far).unwrap().is_empty());
    assert_eq!(s.referenced_blob_keys().unwrap(), ["file-forever"]);
}

fn idempotency_key_with_other_fingerprint_conflicts(b: &dyn Backend) {
    let s = b.open();
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
    // The same key in another scope (tenant) is another record.
    let other = IdempotencyKey {
        scope: "b".into(),
        ..key("bbb")
    };
    assert_eq!(
        s.create_job(
            &job("ftjob-4", "b", &[]),
            &event("ev-4", "ftjob-4"),
            &[other]
        )
        .unwrap(),
        CreateOutcome::Created
    );
}

fn idempotency_returns_existing_job_within_window(b: &dyn Backend) {
    let s = b.open();
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
    assert!(s.list_events("ftjob-2", None, 10).unwrap().data.is_empty());
    // The window's edge still counts (created_at 10 >= not_before 10)...
    let edge = IdempotencyKey {
        not_before: 10,
        ..key.clone()
    };
    let out = s
        .create_job(
            &job("ftjob-3", "a", &[]),
            &event("ftevent-3", "ftjob-3"),
            &[edge],
        )
        .unwrap();
    assert_eq!(out, CreateOutcome::Existing("ftjob-1".into()));
    // ...outside the window the key no longer dedupes, and the new job takes the key over.
    let stale = IdempotencyKey {
        not_before: 11,
        ..key.clone()
    };
    let out = s
        .create_job(
            &job("ftjob-4", "a", &[]),
            &event("ftevent-4", "ftjob-4"),
            &[stale],
        )
        .unwrap();
    assert_eq!(out, CreateOutcome::Created);
    let out = s
        .create_job(
            &job("ftjob-5", "a", &[]),
            &event("ftevent-5", "ftjob-5"),
            &[key],
        )
        .unwrap();
    assert_eq!(out, CreateOutcome::Existing("ftjob-4".into()));
}

fn a_body_match_never_replays_a_dead_job(b: &dyn Backend) {
    let s = b.open();
    let body = IdempotencyKey {
        scope: "a\u{1f}body".into(),
        key: "sha256:abc".into(),
        not_before: 0,
        fingerprint: None,
    };
    let explicit = IdempotencyKey {
        scope: "a".into(),
        key: "header:k".into(),
        not_before: 0,
        fingerprint: Some("fp".into()),
    };
    let create = |id: &str, keys: &[IdempotencyKey]| {
        s.create_job(&job(id, "a", &[]), &event(&format!("ev-{id}"), id), keys)
            .unwrap()
    };
    assert_eq!(
        create("ftjob-1", &[body.clone(), explicit.clone()]),
        CreateOutcome::Created
    );
    let mut failed = s.get_job_any("ftjob-1").unwrap().unwrap();
    failed.status = JobStatus::Failed;
    assert!(s
        .update_job(&failed, JobStatus::ValidatingFiles, &[])
        .unwrap());
    // An explicit key still names its (failed) job...
    assert_eq!(
        create("ftjob-2", std::slice::from_ref(&explicit)),
        CreateOutcome::Existing("ftjob-1".into())
    );
    // ...a body match does not: resubmitting after a failure is a new attempt.
    assert_eq!(
        create("ftjob-3", std::slice::from_ref(&body)),
        CreateOutcome::Created
    );
    assert_eq!(
        create("ftjob-4", std::slice::from_ref(&body)),
        CreateOutcome::Existing("ftjob-3".into())
    );
}

fn racing_creates_with_one_key_make_one_job(b: &dyn Backend) {
    const RACERS: usize = 6;
    let stores: Vec<_> = (0..2).map(|_| b.open()).collect();
    for round in 0..5 {
        let barrier = Barrier::new(RACERS);
        let outcomes: Vec<CreateOutcome> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..RACERS)
                .map(|i| {
                    let s = &stores[i % 2];
                    let barrier = &barrier;
                    scope.spawn(move || {
                        let id = format!("ftjob-{round}-{i}");
                        let key = IdempotencyKey {
                            scope: "a".into(),
                            key: format!("header:k{round}"),
                            not_before: 0,
                            fingerprint: Some("fp".into()),
                        };
                        barrier.wait();
                        s.create_job(
                            &job(&id, "a", &[]),
                            &event(&format!("ev-{id}"), &id),
                            &[key],
                        )
                        .unwrap()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let created = outcomes
            .iter()
            .filter(|o| **o == CreateOutcome::Created)
            .count();
        assert_eq!(created, 1, "round {round}: {outcomes:?}");
        let jobs = stores[0]
            .list_jobs(
                "a",
                &JobQuery {
                    limit: 100,
                    ..Default::default()
                },
            )
            .unwrap()
            .data;
        let winner = jobs
            .iter()
            .filter(|j| j.id.starts_with(&format!("ftjob-{round}-")))
            .collect::<Vec<_>>();
        assert_eq!(winner.len(), 1, "round {round}");
        for o in &outcomes {
            if let CreateOutcome::Existing(id) = o {
                assert_eq!(id, &winner[0].id);
            }
        }
    }
}

fn jobs_filter_by_metadata_and_update_is_conditional(b: &dyn Backend) {
    let s = b.open();
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
    assert_eq!(ids(&p.data, |j| &j.id), ["ftjob-1"]);
    assert!(s.get_job("b", "ftjob-1").unwrap().is_none());

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
    assert_eq!(ids(&ev.data, |e| &e.id), ["ftevent-9", "ftevent-1"]);
    assert_eq!(s.active_jobs().unwrap().len(), 2);
    let mut counts = s.count_jobs().unwrap();
    counts.sort_by_key(|(st, _)| st.as_str());
    assert_eq!(
        counts,
        [(JobStatus::Cancelled, 1), (JobStatus::ValidatingFiles, 2)]
    );
}

/// More jobs than one read batch, few of them matching: the filter is applied across batches
/// and `has_more` is exact.
fn job_list_pages_through_a_sparse_metadata_filter(b: &dyn Backend) {
    let s = b.open();
    let total = 300;
    for i in 0..total {
        let team = if i % 50 == 0 { "x" } else { "y" };
        let id = format!("ftjob-{i:03}");
        s.create_job(
            &job(&id, "a", &[("team", team), ("n", &i.to_string())]),
            &event(&format!("ev-{i}"), &id),
            &[],
        )
        .unwrap();
    }
    let page = |after: Option<&str>, limit| {
        s.list_jobs(
            "a",
            &JobQuery {
                after: after.map(Into::into),
                limit,
                metadata: [("team".to_string(), "x".to_string())].into(),
            },
        )
        .unwrap()
    };
    let p = page(None, 2);
    assert_eq!(ids(&p.data, |j| &j.id), ["ftjob-250", "ftjob-200"]);
    assert!(p.has_more);
    let p = page(Some("ftjob-200"), 3);
    assert_eq!(
        ids(&p.data, |j| &j.id),
        ["ftjob-150", "ftjob-100", "ftjob-050"]
    );
    assert!(p.has_more);
    let p = page(Some("ftjob-050"), 3);
    assert_eq!(ids(&p.data, |j| &j.id), ["ftjob-000"]);
    assert!(!p.has_more);
    // The last match exactly fills the page: no more.
    let p = page(Some("ftjob-100"), 2);
    assert_eq!(ids(&p.data, |j| &j.id), ["ftjob-050", "ftjob-000"]);
    assert!(!p.has_more);
    // Two pairs must both match; the cursor may be a job the filter does not match.
    let p = s
        .list_jobs(
            "a",
            &JobQuery {
                after: Some("ftjob-299".into()),
                limit: 5,
                metadata: [
                    ("team".to_string(), "x".to_string()),
                    ("n".to_string(), "150".to_string()),
                ]
                .into(),
            },
        )
        .unwrap();
    assert_eq!(ids(&p.data, |j| &j.id), ["ftjob-150"]);
    // No filter: plain newest-first pages.
    let p = s
        .list_jobs(
            "a",
            &JobQuery {
                after: Some("ftjob-002".into()),
                limit: 5,
                metadata: Default::default(),
            },
        )
        .unwrap();
    assert_eq!(ids(&p.data, |j| &j.id), ["ftjob-001", "ftjob-000"]);
    assert!(!p.has_more);
}

/// Every field of every record comes back as written, whatever it holds: JSON key order and
/// number forms, unicode, control characters, the largest integers.
fn records_round_trip_exactly(b: &dyn Backend) {
    let s = b.open();
    let mut f = file("file-ü", "tenant_ß", "fine-tune");
    f.bytes = i64::MAX as u64;
    f.filename = "naïve \u{1f} \"quoted\" 🚀.jsonl".into();
    f.expires_at = Some(i64::MAX);
    s.insert_file(&f).unwrap();
    assert_eq!(s.get_file("tenant_ß", "file-ü").unwrap(), Some(f));

    let mut j = job("ftjob-rt", "a", &[("k", "v \u{0} ✓"), ("empty", "")]);
    j.created_at = i64::MIN;
    j.validation_file = Some("file-v".into());
    j.hyperparameters =
        json!({"n_epochs": 3, "learning_rate_multiplier": 1e-5, "batch_size": "auto"});
    j.method = json!({"type": "supervised", "supervised": {"hyperparameters": {"beta": 0.1}}});
    j.suffix = Some("my-suffix".into());
    j.seed = -1;
    j.status = JobStatus::Succeeded;
    j.step = JobStep::Done;
    j.error = Some(JobError {
        code: "c".into(),
        message: "m \n\t".into(),
        param: None,
    });
    j.fine_tuned_model = Some("ft:m:acme::x".into());
    j.finished_at = Some(99);
    j.trained_tokens = Some(i64::MAX);
    j.result_files = vec!["file-r1".into(), "file-r2".into()];
    j.estimated_finish = Some(0);
    // The typed steps' facts (a plan, the blobs, a backend's state) and keys another build
    // wrote, all round-tripped.
    let plan = policies::PolicySet::embedded()
        .resolve(&policies::JobContext::default())
        .unwrap();
    j.pipeline = Pipeline::of(json!({
        "plan": plan.to_json(), "dataset_blob": "ds", "exec_state": {"backend": "local", "step": 3},
        "z": [1, 2.5, -0.0, 1e300, null], "a": {"nested": "\u{0}\u{1f}"}, "big": u64::MAX,
    }));
    assert_eq!(j.pipeline.plan(), Ok(&plan));
    let mut ev = event("ev-rt", "ftjob-rt");
    ev.level = EventLevel::Warn;
    ev.kind = "metrics".into();
    ev.data = Some(json!({"step": 1, "train_loss": 0.123456789012345, "valid_loss": null}));
    assert_eq!(s.create_job(&j, &ev, &[]).unwrap(), CreateOutcome::Created);
    assert_eq!(s.get_job("a", "ftjob-rt").unwrap().as_ref(), Some(&j));
    assert_eq!(s.get_job_any("ftjob-rt").unwrap().as_ref(), Some(&j));
    assert_eq!(s.list_events("ftjob-rt", None, 1).unwrap().data, vec![ev]);

    let mut u = upload("upload_rt", "a", i64::MAX);
    u.status = UploadStatus::Completed;
    u.file_id = Some("file-x".into());
    u.file_expires_after = None;
    u.completed_part_ids = Some(vec!["part_2".into(), "part_1".into()]);
    s.insert_upload(&u).unwrap();
    assert_eq!(s.get_upload("a", "upload_rt").unwrap(), Some(u));
    assert!(s.get_upload("b", "upload_rt").unwrap().is_none());
}

fn reopen_keeps_data_and_uploads_expire(b: &dyn Backend) {
    {
        let s = b.open();
        s.insert_upload(&upload("upload_1", "a", 100)).unwrap();
        s.insert_part(&part("part_1", "upload_1")).unwrap();
    }
    let s = b.open();
    assert!(s.expire_uploads(99).unwrap().is_empty());
    let expired = s.expire_uploads(100).unwrap();
    assert_eq!(expired.len(), 1);
    assert_eq!(expired[0].status, UploadStatus::Expired);
    assert_eq!(expired[0].file_expires_after, Some(3600));
    assert!(s.expire_uploads(100).unwrap().is_empty());
    assert_eq!(
        s.get_upload("a", "upload_1").unwrap().unwrap().status,
        UploadStatus::Expired
    );
    assert!(!s
        .finish_upload("upload_1", UploadStatus::Cancelled, None)
        .unwrap());
    assert_eq!(s.finished_uploads_with_parts().unwrap(), ["upload_1"]);
    assert_eq!(s.delete_parts("upload_1").unwrap(), ["blob-part_1"]);
    assert!(s.finished_uploads_with_parts().unwrap().is_empty());
    assert!(s.referenced_blob_keys().unwrap().is_empty());
}

fn an_upload_completes_once_into_a_file(b: &dyn Backend) {
    let s = b.open();
    s.insert_upload(&upload("upload_1", "a", 1000)).unwrap();
    for p in ["part_3", "part_1", "part_2"] {
        s.insert_part(&part(p, "upload_1")).unwrap();
    }
    assert_eq!(
        ids(&s.list_parts("upload_1").unwrap(), |p| &p.id),
        ["part_3", "part_1", "part_2"]
    );
    // A pending upload with parts is not a leftover.
    assert!(s.finished_uploads_with_parts().unwrap().is_empty());
    let f = file("file-up", "a", "fine-tune");
    let order = ["part_1".to_string(), "part_2".to_string()];
    assert!(s
        .finish_upload("upload_1", UploadStatus::Completed, Some((&f, &order)))
        .unwrap());
    let other = file("file-twice", "a", "fine-tune");
    assert!(!s
        .finish_upload("upload_1", UploadStatus::Completed, Some((&other, &order)))
        .unwrap());
    assert!(!s
        .finish_upload("upload_1", UploadStatus::Cancelled, None)
        .unwrap());
    assert!(s.get_file("a", "file-twice").unwrap().is_none());
    assert_eq!(s.get_file("a", "file-up").unwrap(), Some(f));
    let u = s.get_upload("a", "upload_1").unwrap().unwrap();
    assert_eq!(
        (u.status, u.file_id.as_deref(), u.completed_part_ids),
        (
            UploadStatus::Completed,
            Some("file-up"),
            Some(order.to_vec())
        )
    );
    let mut j = job("ftjob-1", "a", &[]);
    j.pipeline = Pipeline::of(json!({"dataset_blob": "ds-1", "manifest_blob": "mf-1",
        "adapter_blob": "ad-1", "other": "x"}));
    s.create_job(&j, &event("ev-1", "ftjob-1"), &[]).unwrap();
    // A checkpoint's artifact is referenced too (one without an artifact adds nothing).
    let mut stored = checkpoint("ck-1", "ftjob-1", 2);
    stored.artifact = Some("ck-art-2".into());
    let ckpts = [stored.clone(), checkpoint("ck-2", "ftjob-1", 4)];
    assert!(s.update_job_observed(&j, j.status, &[], &ckpts).unwrap());
    let listed = s.list_checkpoints("ftjob-1", None, 10).unwrap().data;
    assert_eq!(listed.last(), Some(&stored), "the artifact reads back");
    let mut keys = s.referenced_blob_keys().unwrap();
    keys.sort();
    assert_eq!(
        keys,
        [
            "ad-1",
            "blob-part_1",
            "blob-part_2",
            "blob-part_3",
            "ck-art-2",
            "ds-1",
            "file-up",
            "mf-1"
        ]
    );
    assert_eq!(s.finished_uploads_with_parts().unwrap(), ["upload_1"]);
    assert_eq!(
        s.delete_parts("upload_1").unwrap(),
        ["blob-part_3", "blob-part_1", "blob-part_2"]
    );
    assert!(s.list_parts("upload_1").unwrap().is_empty());
    // Expiry never touches a finished upload.
    assert!(s.expire_uploads(i64::MAX).unwrap().is_empty());
}

/// A cursor that names no object of the list is an error (the API's 400 on `after`), never a
/// silent restart from the newest item; another tenant's or job's id is the same error.
fn unknown_or_foreign_cursors_are_errors(b: &dyn Backend) {
    let s = b.open();
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

fn events_and_checkpoints_page_newest_first(b: &dyn Backend) {
    let s = b.open();
    let mut j = job("ftjob-1", "a", &[]);
    s.create_job(&j, &event("ev-0", "ftjob-1"), &[]).unwrap();
    s.create_job(&job("ftjob-2", "a", &[]), &event("ev-x", "ftjob-2"), &[])
        .unwrap();
    for i in 1..=4 {
        s.insert_event(&event(&format!("ev-{i}"), "ftjob-1"))
            .unwrap();
    }
    j.step = JobStep::Run;
    j.status = JobStatus::Running;
    let cks: Vec<_> = (1..=3)
        .map(|i| checkpoint(&format!("ftckpt-{i}"), "ftjob-1", i * 10))
        .collect();
    assert!(s
        .update_job_observed(&j, JobStatus::ValidatingFiles, &[], &cks)
        .unwrap());
    let p = s.list_events("ftjob-1", None, 2).unwrap();
    assert_eq!(ids(&p.data, |e| &e.id), ["ev-4", "ev-3"]);
    assert!(p.has_more);
    let p = s.list_events("ftjob-1", Some("ev-3"), 2).unwrap();
    assert_eq!(ids(&p.data, |e| &e.id), ["ev-2", "ev-1"]);
    assert!(p.has_more);
    let p = s.list_events("ftjob-1", Some("ev-1"), 2).unwrap();
    assert_eq!(ids(&p.data, |e| &e.id), ["ev-0"]);
    assert!(!p.has_more);
    let p = s.list_checkpoints("ftjob-1", None, 2).unwrap();
    assert_eq!(p.data, vec![cks[2].clone(), cks[1].clone()]);
    assert!(p.has_more);
    let p = s.list_checkpoints("ftjob-1", Some("ftckpt-2"), 2).unwrap();
    assert_eq!(p.data, vec![cks[0].clone()]);
    assert!(!p.has_more);
    assert!(s
        .list_checkpoints("ftjob-2", None, 10)
        .unwrap()
        .data
        .is_empty());
    assert!(s
        .list_events("ftjob-nope", None, 10)
        .unwrap()
        .data
        .is_empty());
}

/// A job's `fine_tuned_model` is listed to its tenant once the job succeeded, its checkpoints
/// as soon as they are stored; never to another tenant, never a name no job has.
fn a_model_is_listed_to_its_tenant_once_served(b: &dyn Backend) {
    let s = b.open();
    let mut j = job("ftjob-1", "a", &[]);
    s.create_job(&j, &event("ev-0", "ftjob-1"), &[]).unwrap();
    let final_model = "ft:m:acme::ftjob-1";
    let ckpt = checkpoint("ftckpt-1", "ftjob-1", 4);
    assert!(!s
        .model_listed("a", &ckpt.fine_tuned_model_checkpoint)
        .unwrap());
    j.status = JobStatus::Running;
    j.step = JobStep::Run;
    assert!(s
        .update_job_observed(
            &j,
            JobStatus::ValidatingFiles,
            &[],
            std::slice::from_ref(&ckpt)
        )
        .unwrap());
    let j = s.get_job_any("ftjob-1").unwrap().unwrap();
    assert!(s
        .model_listed("a", &ckpt.fine_tuned_model_checkpoint)
        .unwrap());
    assert!(!s
        .model_listed("b", &ckpt.fine_tuned_model_checkpoint)
        .unwrap());
    // Named on a running job (as a cancelled or failed one keeps it unset): not listed.
    let mut named = j.clone();
    named.fine_tuned_model = Some(final_model.into());
    assert!(s
        .update_job_observed(&named, JobStatus::Running, &[], &[])
        .unwrap());
    assert!(!s.model_listed("a", final_model).unwrap());
    let named = s.get_job_any("ftjob-1").unwrap().unwrap();
    let done = StatusChange {
        job_id: "ftjob-1".into(),
        expected: JobStatus::Running,
        expected_step: JobStep::Run,
        status: JobStatus::Succeeded,
        step: JobStep::Run,
        finished_at: Some(30),
    };
    assert!(s
        .set_job_status(&done, &event("ev-done", "ftjob-1"))
        .unwrap());
    assert_eq!(
        s.get_job_any("ftjob-1").unwrap().unwrap().fine_tuned_model,
        named.fine_tuned_model
    );
    assert!(s.model_listed("a", final_model).unwrap());
    assert!(!s.model_listed("b", final_model).unwrap());
    assert!(!s.model_listed("a", "ft:m:acme::ftjob-2").unwrap());
    assert!(!s.model_listed("a", "m").unwrap());

    // A job the monitor rolled back finishes with a checkpoint: the checkpoints after it
    // (stored before the decision) are no longer listed; it and those before it are.
    let mut rb = job("ftjob-rb", "a", &[]);
    s.create_job(&rb, &event("ev-rb", "ftjob-rb"), &[]).unwrap();
    rb.status = JobStatus::Running;
    rb.step = JobStep::Run;
    let cks: Vec<_> = [1, 2, 3]
        .map(|n| checkpoint(&format!("ftckpt-rb-{n}"), "ftjob-rb", n * 10))
        .to_vec();
    assert!(s
        .update_job_observed(&rb, JobStatus::ValidatingFiles, &[], &cks)
        .unwrap());
    let name = |i: usize| cks[i].fine_tuned_model_checkpoint.clone();
    assert!(
        s.model_listed("a", &name(2)).unwrap(),
        "listed until the job ends"
    );
    let mut rb = s.get_job_any("ftjob-rb").unwrap().unwrap();
    (rb.status, rb.fine_tuned_model) = (JobStatus::Succeeded, Some(name(1)));
    assert!(s.update_job(&rb, JobStatus::Running, &[]).unwrap());
    assert!(s.model_listed("a", &name(0)).unwrap());
    assert!(s.model_listed("a", &name(1)).unwrap());
    assert!(
        !s.model_listed("a", &name(2)).unwrap(),
        "after the rollback target"
    );
    // All at once: exactly what `model_listed` says yes to.
    let all = s.listed_models("a").unwrap();
    let want: std::collections::HashSet<String> = [
        final_model.to_string(),
        ckpt.fine_tuned_model_checkpoint.clone(),
        name(0),
        name(1),
    ]
    .into();
    assert_eq!(all, want);
    assert!(s.listed_models("b").unwrap().is_empty());
}

fn owed_cancels_are_cancelled_jobs_at_the_cancel_step(b: &dyn Backend) {
    let s = b.open();
    for (id, status, step) in [
        ("ftjob-1", JobStatus::Cancelled, JobStep::Cancel),
        ("ftjob-2", JobStatus::Cancelled, JobStep::Done),
        ("ftjob-3", JobStatus::Running, JobStep::Run),
        ("ftjob-4", JobStatus::Cancelled, JobStep::Cancel),
    ] {
        let mut j = job(id, "a", &[]);
        (j.status, j.step) = (status, step);
        s.create_job(&j, &event(&format!("ev-{id}"), id), &[])
            .unwrap();
    }
    let owed = s.owed_cancels().unwrap();
    assert_eq!(ids(&owed, |j| &j.id), ["ftjob-1", "ftjob-4"]);
    assert!(owed.iter().all(|j| j.step == JobStep::Cancel));
    assert_eq!(ids(&s.active_jobs().unwrap(), |j| &j.id), ["ftjob-3"]);
    let settle = StatusChange {
        job_id: "ftjob-1".into(),
        expected: JobStatus::Cancelled,
        expected_step: JobStep::Cancel,
        status: JobStatus::Cancelled,
        step: JobStep::Done,
        finished_at: None,
    };
    assert!(s
        .set_job_status(&settle, &event("ev-settle", "ftjob-1"))
        .unwrap());
    assert!(
        !s.set_job_status(&settle, &event("ev-settle-2", "ftjob-1"))
            .unwrap(),
        "settled once"
    );
    assert_eq!(ids(&s.owed_cancels().unwrap(), |j| &j.id), ["ftjob-4"]);
}

fn one_replica_drives_a_job_until_its_lease_runs_out(b: &dyn Backend) {
    let (s, other) = (b.open(), b.open());
    assert!(s.lease_drive("ftjob-1", "r1", 100, 30).unwrap());
    assert!(
        !other.lease_drive("ftjob-1", "r2", 110, 30).unwrap(),
        "held by r1"
    );
    assert!(
        other.lease_drive("ftjob-2", "r2", 110, 30).unwrap(),
        "per job"
    );
    assert!(
        s.lease_drive("ftjob-1", "r1", 120, 30).unwrap(),
        "renewed to 150"
    );
    assert!(!other.lease_drive("ftjob-1", "r2", 140, 30).unwrap());
    assert!(
        other.lease_drive("ftjob-1", "r2", 150, 30).unwrap(),
        "expired: taken over"
    );
    assert!(
        !s.lease_drive("ftjob-1", "r1", 151, 30).unwrap(),
        "r1 lost it"
    );
    s.release_drive("ftjob-1", "r1").unwrap();
    assert!(
        !s.lease_drive("ftjob-1", "r1", 152, 30).unwrap(),
        "not r1's to release"
    );
    other.release_drive("ftjob-1", "r2").unwrap();
    assert!(
        s.lease_drive("ftjob-1", "r1", 152, 30).unwrap(),
        "released: free at once"
    );
    // Racing replicas: exactly one takes a free job.
    let barrier = Barrier::new(8);
    let won: usize = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let (st, barrier) = (b.open(), &barrier);
                scope.spawn(move || {
                    barrier.wait();
                    st.lease_drive("ftjob-3", &format!("r{i}"), 200, 30)
                        .unwrap() as usize
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    });
    assert_eq!(won, 1);
}

/// A poll whose write is refused (a pause raced it) stores neither its events nor its
/// checkpoints, so the next poll mirrors them exactly once.
fn a_refused_poll_stores_no_checkpoint(b: &dyn Backend) {
    let s = b.open();
    let mut j = job("ftjob-1", "a", &[]);
    j.status = JobStatus::Running;
    j.step = JobStep::Run;
    s.create_job(&j, &event("ev-0", "ftjob-1"), &[]).unwrap();
    let pause = StatusChange {
        job_id: "ftjob-1".into(),
        expected: JobStatus::Running,
        expected_step: JobStep::Run,
        status: JobStatus::Paused,
        step: JobStep::Run,
        finished_at: None,
    };
    assert!(s
        .set_job_status(&pause, &event("ev-pause", "ftjob-1"))
        .unwrap());
    let mut polled = j.clone();
    polled.pipeline = Pipeline::of(json!({"poll_cursor": 7}));
    assert!(!s
        .update_job_observed(
            &polled,
            JobStatus::Running,
            &[event("ev-poll", "ftjob-1")],
            &[checkpoint("ftckpt-1", "ftjob-1", 1)],
        )
        .unwrap());
    assert!(s
        .list_checkpoints("ftjob-1", None, 10)
        .unwrap()
        .data
        .is_empty());
    assert_eq!(
        ids(&s.list_events("ftjob-1", None, 10).unwrap().data, |e| &e.id),
        ["ev-pause", "ev-0"]
    );
    let now = s.get_job_any("ftjob-1").unwrap().unwrap();
    assert_eq!(
        (now.status, now.pipeline),
        (JobStatus::Paused, Pipeline::default())
    );
}

fn a_status_change_decided_on_an_old_step_does_not_rewind_the_job(b: &dyn Backend) {
    let s = b.open();
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
        ..stale.clone()
    };
    assert!(s
        .set_job_status(&fresh, &event("ftevent-3", "ftjob-1"))
        .unwrap());
    let now = s.get_job_any("ftjob-1").unwrap().unwrap();
    assert_eq!(
        (now.status, now.step, now.finished_at),
        (JobStatus::Paused, JobStep::Transform, None)
    );
    assert_eq!(
        ids(&s.list_events("ftjob-1", None, 10).unwrap().data, |e| &e.id),
        ["ftevent-3", "ftevent-1"]
    );
    // A finishing change sets finished_at; a later change without one keeps it.
    let cancel = StatusChange {
        expected: JobStatus::Paused,
        status: JobStatus::Cancelled,
        finished_at: Some(42),
        ..fresh
    };
    assert!(s
        .set_job_status(&cancel, &event("ftevent-4", "ftjob-1"))
        .unwrap());
    let after = StatusChange {
        expected: JobStatus::Cancelled,
        status: JobStatus::Failed,
        finished_at: None,
        ..cancel
    };
    assert!(s
        .set_job_status(&after, &event("ftevent-5", "ftjob-1"))
        .unwrap());
    assert_eq!(
        s.get_job_any("ftjob-1").unwrap().unwrap().finished_at,
        Some(42)
    );
    let missing = StatusChange {
        job_id: "ftjob-nope".into(),
        ..stale
    };
    assert!(!s
        .set_job_status(&missing, &event("ftevent-6", "ftjob-nope"))
        .unwrap());
    assert!(s
        .list_events("ftjob-nope", None, 10)
        .unwrap()
        .data
        .is_empty());
}

/// The runner writes `estimated_finish` with its polls; a client's pause, resume or cancel
/// clears it (the run it was measured on ended).
/// Two gateway replicas drive the same job: both read it, both poll the backend, both try to
/// record the same observations. Only the first write applies; the second (and a write made
/// on a job read before a client's pause) is refused, its events and checkpoints with it.
fn two_runners_that_read_one_revision_record_it_once(b: &dyn Backend) {
    let s = b.open();
    let mut j = job("ftjob-1", "a", &[]);
    j.status = JobStatus::Running;
    j.step = JobStep::Run;
    s.create_job(&j, &event("ev-0", "ftjob-1"), &[]).unwrap();
    let read = s.get_job_any("ftjob-1").unwrap().unwrap();
    let (mut first, mut second) = (read.clone(), read.clone());
    first.trained_tokens = Some(1);
    second.trained_tokens = Some(2);
    assert!(s
        .update_job(&first, JobStatus::Running, &[event("ev-a", "ftjob-1")])
        .unwrap());
    assert!(!s
        .update_job(&second, JobStatus::Running, &[event("ev-b", "ftjob-1")])
        .unwrap());
    let now = s.get_job_any("ftjob-1").unwrap().unwrap();
    assert_eq!(now.trained_tokens, Some(1));
    assert_eq!(now.revision, read.revision + 1);
    let ids: Vec<String> = s
        .list_events("ftjob-1", None, 10)
        .unwrap()
        .data
        .into_iter()
        .map(|e| e.id)
        .collect();
    assert!(ids.contains(&"ev-a".to_string()) && !ids.contains(&"ev-b".to_string()));
    // A status change advances the revision too: a write read before it is refused.
    let pause = StatusChange {
        job_id: "ftjob-1".into(),
        expected: JobStatus::Running,
        expected_step: JobStep::Run,
        status: JobStatus::Running,
        step: JobStep::Run,
        finished_at: None,
    };
    assert!(s.set_job_status(&pause, &event("ev-c", "ftjob-1")).unwrap());
    assert!(!s.update_job(&now, JobStatus::Running, &[]).unwrap());
}

fn a_status_change_clears_the_estimated_finish(b: &dyn Backend) {
    let s = b.open();
    let mut j = job("ftjob-1", "a", &[]);
    j.status = JobStatus::Running;
    j.step = JobStep::Run;
    s.create_job(&j, &event("ev-0", "ftjob-1"), &[]).unwrap();
    j.estimated_finish = Some(1_000);
    assert!(s.update_job(&j, JobStatus::Running, &[]).unwrap());
    let read = |s: &dyn Store| s.get_job_any("ftjob-1").unwrap().unwrap().estimated_finish;
    assert_eq!(read(&*s), Some(1_000));
    let pause = StatusChange {
        job_id: "ftjob-1".into(),
        expected: JobStatus::Running,
        expected_step: JobStep::Run,
        status: JobStatus::Paused,
        step: JobStep::Run,
        finished_at: None,
    };
    assert!(s
        .set_job_status(&pause, &event("ev-pause", "ftjob-1"))
        .unwrap());
    assert_eq!(read(&*s), None);
    // A refused change leaves it as it is.
    let mut j = s.get_job_any("ftjob-1").unwrap().unwrap();
    j.status = JobStatus::Paused;
    j.estimated_finish = Some(2_000);
    assert!(s.update_job(&j, JobStatus::Paused, &[]).unwrap());
    assert!(!s
        .set_job_status(&pause, &event("ev-pause-2", "ftjob-1"))
        .unwrap());
    assert_eq!(read(&*s), Some(2_000));
}

/// Two processes pause / cancel / advance one job at the same moment: exactly one
/// compare-and-set applies, with exactly its event.
fn racing_status_changes_apply_once(b: &dyn Backend) {
    const RACERS: usize = 6;
    let stores: Vec<_> = (0..2).map(|_| b.open()).collect();
    for round in 0..5 {
        let id = format!("ftjob-{round}");
        let mut j = job(&id, "a", &[]);
        j.status = JobStatus::Running;
        j.step = JobStep::Run;
        stores[0]
            .create_job(&j, &event(&format!("ev-{round}"), &id), &[])
            .unwrap();
        let barrier = Barrier::new(RACERS);
        let wins: Vec<bool> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..RACERS)
                .map(|i| {
                    let s = &stores[i % 2];
                    let (barrier, id, j) = (&barrier, &id, &j);
                    scope.spawn(move || {
                        let ev = event(&format!("ev-{round}-{i}"), id);
                        barrier.wait();
                        if i % 3 == 0 {
                            // the runner finishing the job
                            let done = JobRecord {
                                status: JobStatus::Succeeded,
                                step: JobStep::Done,
                                ..j.clone()
                            };
                            s.update_job(&done, JobStatus::Running, &[ev]).unwrap()
                        } else {
                            let change = StatusChange {
                                job_id: id.clone(),
                                expected: JobStatus::Running,
                                expected_step: JobStep::Run,
                                status: if i % 3 == 1 {
                                    JobStatus::Paused
                                } else {
                                    JobStatus::Cancelled
                                },
                                step: JobStep::Run,
                                finished_at: None,
                            };
                            s.set_job_status(&change, &ev).unwrap()
                        }
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(wins.iter().filter(|w| **w).count(), 1, "round {round}");
        let winner = wins.iter().position(|w| *w).unwrap();
        let events = stores[1].list_events(&id, None, 100).unwrap().data;
        assert_eq!(
            ids(&events, |e| &e.id),
            [format!("ev-{round}-{winner}"), format!("ev-{round}")]
        );
    }
}

fn policy_snapshots_are_write_once(b: &dyn Backend) {
    let s = b.open();
    assert!(s.get_policy_snapshot("v1").unwrap().is_none());
    let snap = PolicySnapshot {
        version_hash: "v1".into(),
        created_at: 5,
        body: json!({"policies": [{"name": "default", "fraction": 0.05}]}),
    };
    s.save_policy_snapshot(&snap).unwrap();
    s.save_policy_snapshot(&PolicySnapshot {
        created_at: 6,
        body: json!({"other": true}),
        ..snap.clone()
    })
    .unwrap();
    assert_eq!(s.get_policy_snapshot("v1").unwrap(), Some(snap));
}

fn local_job(store: &dyn Store, id: &str, tenant: &str, seq_time: i64) {
    let mut j = job(id, tenant, &[]);
    j.created_at = seq_time;
    j.status = JobStatus::Running;
    j.step = JobStep::Run;
    j.pipeline = Pipeline::of(json!({"exec_state": {"backend": "local"}}));
    let ev = event(&format!("ev-{id}"), id);
    store.create_job(&j, &ev, &[]).unwrap();
}

fn leases_are_exclusive_expire_and_alternate_between_tenants(b: &dyn Backend) {
    let s = b.open();
    // acme queues three jobs before beta's one; beta must not wait for all of acme's.
    local_job(&*s, "a1", "acme", 1);
    local_job(&*s, "a2", "acme", 2);
    local_job(&*s, "a3", "acme", 3);
    local_job(&*s, "b1", "beta", 4);
    // A job not marked local is never claimed; nor is a local job that is paused or not yet
    // at its run step.
    let mut other = job("up", "acme", &[]);
    other.status = JobStatus::Running;
    other.step = JobStep::Run;
    other.pipeline = Pipeline::of(json!({"exec_state": {"upstream_id": "x"}}));
    s.create_job(&other, &event("ev-up", "up"), &[]).unwrap();
    let mut paused = job("p1", "gamma", &[]);
    paused.status = JobStatus::Paused;
    paused.step = JobStep::Run;
    paused.pipeline = Pipeline::of(json!({"exec_state": {"backend": "local"}}));
    s.create_job(&paused, &event("ev-p1", "p1"), &[]).unwrap();
    let mut queued = paused.clone();
    queued.id = "q1".into();
    queued.status = JobStatus::Queued;
    queued.step = JobStep::Queue;
    s.create_job(&queued, &event("ev-q1", "q1"), &[]).unwrap();

    let now = 100;
    let queue = |waiting, leased, takeovers| LocalQueue {
        waiting,
        leased,
        takeovers,
    };
    assert_eq!(s.local_queue(now).unwrap(), queue(4, 0, 0));
    let first = s.claim_local_job("w1", now, 30).unwrap().unwrap();
    assert_eq!(first.job.id, "a1");
    assert_eq!(first.takeover_from, None);
    assert_eq!(
        s.lease_of("a1").unwrap(),
        Some(Lease {
            job_id: "a1".into(),
            worker_id: "w1".into(),
            acquired_at: now,
            heartbeat_at: now,
            expires_at: now + 30,
        })
    );
    let second = s.claim_local_job("w2", now, 30).unwrap().unwrap();
    assert_eq!(second.job.id, "b1", "round-robin: beta next");
    let third = s.claim_local_job("w3", now, 30).unwrap().unwrap();
    assert_eq!(third.job.id, "a2");
    assert_eq!(s.local_queue(now).unwrap(), queue(1, 3, 0));
    // Held leases are not claimed again; a heartbeat keeps a lease alive.
    assert!(s.heartbeat_lease("a1", "w1", now + 20, 30).unwrap());
    assert_eq!(s.lease_of("a1").unwrap().unwrap().heartbeat_at, now + 20);
    assert!(
        !s.heartbeat_lease("a1", "w2", now + 20, 30).unwrap(),
        "only the holder renews"
    );
    // At now+40 the leases of b1 and a2 (to now+30) have lapsed; a1's runs to now+50.
    // beta was served longest ago, so its expired job is taken over first.
    let fourth = s.claim_local_job("w4", now + 40, 30).unwrap().unwrap();
    assert_eq!(fourth.job.id, "b1");
    assert_eq!(fourth.takeover_from.as_deref(), Some("w2"));
    // a2's lapsed lease counts as waiting, not as a busy worker; the takeover is counted.
    assert_eq!(s.local_queue(now + 40).unwrap(), queue(2, 2, 1));
    // A released lease frees the job at once; releasing someone else's is a no-op.
    s.release_lease("a1", "w9").unwrap();
    assert!(s.lease_of("a1").unwrap().is_some());
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
    // Two takeovers in all (b1 from w2, a2 from w3); a claim of a released job is none.
    assert_eq!(s.local_queue(now + 46).unwrap().takeovers, 2);
    // A worker may still hold the lease of a job that has just ended (it waits for the runner
    // to read its outcome), but a job that has ended is no busy worker.
    let busy = s.local_queue(now + 46).unwrap().leased;
    let done = StatusChange {
        job_id: "a3".into(),
        expected: JobStatus::Running,
        expected_step: JobStep::Run,
        status: JobStatus::Succeeded,
        step: JobStep::Done,
        finished_at: Some(now + 46),
    };
    assert!(s.set_job_status(&done, &event("ev-a3-done", "a3")).unwrap());
    assert!(s.lease_of("a3").unwrap().is_some());
    assert_eq!(s.local_queue(now + 46).unwrap().leased, busy - 1);
}

/// Many workers in two processes claim at once: every job is taken exactly once, and the
/// tenants take turns exactly as they do one claim at a time (each claim goes to the tenant
/// served longest ago), so racing claims never hand one tenant two jobs out of turn.
fn racing_claims_take_each_job_once_in_tenant_turns(b: &dyn Backend) {
    const WORKERS: usize = 8;
    let stores: Vec<_> = (0..2).map(|_| b.open()).collect();
    let tenants = ["t0", "t1", "t2"];
    for i in 0..5 {
        for t in tenants {
            local_job(&*stores[0], &format!("{t}-{i}"), t, i);
        }
    }
    // `budget` claims in all, by WORKERS racing workers; then what was claimed.
    let race = |budget: usize| -> Vec<String> {
        let left = std::sync::atomic::AtomicUsize::new(budget);
        let barrier = Barrier::new(WORKERS);
        let claims: Vec<Vec<String>> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..WORKERS)
                .map(|w| {
                    let (s, barrier, left) = (&stores[w % 2], &barrier, &left);
                    scope.spawn(move || {
                        barrier.wait();
                        let mut mine = Vec::new();
                        while left
                            .fetch_update(SeqCst, SeqCst, |n| n.checked_sub(1))
                            .is_ok()
                        {
                            let Some(c) = s.claim_local_job(&format!("w{w}"), 100, 30).unwrap()
                            else {
                                break;
                            };
                            assert!(c.takeover_from.is_none());
                            mine.push(c.job.id);
                        }
                        mine
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let mut all = claims.concat();
        all.sort();
        all
    };
    use std::sync::atomic::Ordering::SeqCst;
    // Six claims: two turns of three tenants, each tenant's oldest jobs.
    assert_eq!(
        race(6),
        ["t0-0", "t0-1", "t1-0", "t1-1", "t2-0", "t2-1"],
        "tenant turns under racing claims"
    );
    let rest = race(usize::MAX);
    let mut expected: Vec<String> = (2..5)
        .flat_map(|i| tenants.map(|t| format!("{t}-{i}")))
        .collect();
    expected.sort();
    assert_eq!(rest, expected, "each job exactly once");
    assert!(stores[1]
        .claim_local_job("late", 100, 30)
        .unwrap()
        .is_none());
}

/// A worker renewing a just-expired lease races another worker taking the job over: exactly
/// one of them holds the job afterwards.
fn a_heartbeat_and_a_takeover_never_both_win(b: &dyn Backend) {
    let stores: Vec<_> = (0..2).map(|_| b.open()).collect();
    for round in 0..10 {
        let id = format!("job-{round}");
        local_job(&*stores[0], &id, "acme", round);
        let first = stores[0].claim_local_job("old", 100, 30).unwrap().unwrap();
        assert_eq!(first.job.id, id);
        let barrier = Barrier::new(2);
        let (renewed, taken) = std::thread::scope(|scope| {
            let renew = scope.spawn(|| {
                barrier.wait();
                stores[0].heartbeat_lease(&id, "old", 131, 30).unwrap()
            });
            let take = scope.spawn(|| {
                barrier.wait();
                stores[1].claim_local_job("new", 131, 30).unwrap()
            });
            (renew.join().unwrap(), take.join().unwrap())
        });
        let holder = stores[1].lease_of(&id).unwrap().unwrap().worker_id;
        match taken {
            Some(c) => {
                assert_eq!(c.job.id, id);
                assert_eq!(c.takeover_from.as_deref(), Some("old"));
                assert!(!renewed, "round {round}: both won");
                assert_eq!(holder, "new");
            }
            None => {
                assert!(renewed, "round {round}: neither won");
                assert_eq!(holder, "old");
            }
        }
        // Finish the round's job so it is never a candidate again.
        let mut done = stores[0].get_job_any(&id).unwrap().unwrap();
        done.status = JobStatus::Succeeded;
        done.step = JobStep::Done;
        assert!(stores[0]
            .update_job(&done, JobStatus::Running, &[])
            .unwrap());
    }
}
