-- Schema version 1 (PRAGMA user_version = 1). Never edit a shipped migration: add a new file.
CREATE TABLE files (
  seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, tenant TEXT NOT NULL,
  bytes INTEGER NOT NULL, created_at INTEGER NOT NULL, filename TEXT NOT NULL,
  purpose TEXT NOT NULL, expires_at INTEGER, blob_key TEXT NOT NULL);
CREATE INDEX files_tenant ON files(tenant, seq);
CREATE TABLE uploads (
  id TEXT PRIMARY KEY, tenant TEXT NOT NULL, bytes INTEGER NOT NULL, created_at INTEGER NOT NULL,
  expires_at INTEGER NOT NULL, filename TEXT NOT NULL, mime_type TEXT NOT NULL,
  purpose TEXT NOT NULL, status TEXT NOT NULL, file_id TEXT);
CREATE TABLE parts (
  seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, upload_id TEXT NOT NULL,
  created_at INTEGER NOT NULL, bytes INTEGER NOT NULL, blob_key TEXT NOT NULL);
CREATE INDEX parts_upload ON parts(upload_id);
CREATE TABLE jobs (
  seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, tenant TEXT NOT NULL,
  created_at INTEGER NOT NULL, model TEXT NOT NULL, training_file TEXT NOT NULL,
  validation_file TEXT, hyperparameters TEXT NOT NULL, method TEXT NOT NULL, suffix TEXT,
  seed INTEGER NOT NULL, metadata TEXT, status TEXT NOT NULL, step TEXT NOT NULL, error TEXT,
  fine_tuned_model TEXT, finished_at INTEGER, trained_tokens INTEGER,
  result_files TEXT NOT NULL, estimated_finish INTEGER, pipeline TEXT NOT NULL);
CREATE INDEX jobs_tenant ON jobs(tenant, seq);
CREATE INDEX jobs_status ON jobs(status);
CREATE TABLE events (
  seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, job_id TEXT NOT NULL,
  created_at INTEGER NOT NULL, level TEXT NOT NULL, message TEXT NOT NULL, kind TEXT NOT NULL,
  data TEXT);
CREATE INDEX events_job ON events(job_id, seq);
CREATE TABLE checkpoints (
  seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, job_id TEXT NOT NULL,
  created_at INTEGER NOT NULL, fine_tuned_model_checkpoint TEXT NOT NULL,
  step_number INTEGER NOT NULL, metrics TEXT NOT NULL);
CREATE INDEX checkpoints_job ON checkpoints(job_id, seq);
CREATE TABLE idempotency (
  scope TEXT NOT NULL, key TEXT NOT NULL, job_id TEXT NOT NULL, created_at INTEGER NOT NULL,
  PRIMARY KEY (scope, key));
CREATE TABLE policy_snapshots (
  version_hash TEXT PRIMARY KEY, created_at INTEGER NOT NULL, body TEXT NOT NULL);
