-- PostgreSQL schema version 1 (a row in schema_migrations). Never edit a shipped migration:
-- add a new file. The same tables as SQLite's v1..v3; JSON columns stay TEXT (as SQLite
-- keeps them) so a value reads back byte for byte — jsonb would reorder keys, reformat
-- numbers and refuse \u0000 in strings. `seq` orders every list and is its cursor.
CREATE TABLE files (
  seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, id TEXT NOT NULL UNIQUE,
  tenant TEXT NOT NULL, bytes BIGINT NOT NULL, created_at BIGINT NOT NULL,
  filename TEXT NOT NULL, purpose TEXT NOT NULL, expires_at BIGINT, blob_key TEXT NOT NULL);
CREATE INDEX files_tenant ON files (tenant, seq);
CREATE INDEX files_expiring ON files (expires_at) WHERE expires_at IS NOT NULL;

CREATE TABLE uploads (
  id TEXT PRIMARY KEY, tenant TEXT NOT NULL, bytes BIGINT NOT NULL, created_at BIGINT NOT NULL,
  expires_at BIGINT NOT NULL, filename TEXT NOT NULL, mime_type TEXT NOT NULL,
  purpose TEXT NOT NULL, status TEXT NOT NULL, file_id TEXT, file_expires_after BIGINT,
  completed_part_ids TEXT);
CREATE INDEX uploads_pending ON uploads (expires_at) WHERE status = 'pending';

CREATE TABLE parts (
  seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, id TEXT NOT NULL UNIQUE,
  upload_id TEXT NOT NULL, created_at BIGINT NOT NULL, bytes BIGINT NOT NULL,
  blob_key TEXT NOT NULL);
CREATE INDEX parts_upload ON parts (upload_id, seq);

CREATE TABLE jobs (
  seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, id TEXT NOT NULL UNIQUE,
  tenant TEXT NOT NULL, created_at BIGINT NOT NULL, model TEXT NOT NULL,
  training_file TEXT NOT NULL, validation_file TEXT, hyperparameters TEXT NOT NULL,
  method TEXT NOT NULL, suffix TEXT, seed BIGINT NOT NULL, metadata TEXT, status TEXT NOT NULL,
  step TEXT NOT NULL, error TEXT, fine_tuned_model TEXT, finished_at BIGINT,
  trained_tokens BIGINT, result_files TEXT NOT NULL, estimated_finish BIGINT,
  pipeline TEXT NOT NULL);
CREATE INDEX jobs_tenant ON jobs (tenant, seq);
CREATE INDEX jobs_status ON jobs (status);

CREATE TABLE events (
  seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, id TEXT NOT NULL UNIQUE,
  job_id TEXT NOT NULL, created_at BIGINT NOT NULL, level TEXT NOT NULL, message TEXT NOT NULL,
  kind TEXT NOT NULL, data TEXT);
CREATE INDEX events_job ON events (job_id, seq);

CREATE TABLE checkpoints (
  seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, id TEXT NOT NULL UNIQUE,
  job_id TEXT NOT NULL, created_at BIGINT NOT NULL, fine_tuned_model_checkpoint TEXT NOT NULL,
  step_number BIGINT NOT NULL, metrics TEXT NOT NULL);
CREATE INDEX checkpoints_job ON checkpoints (job_id, seq);

CREATE TABLE idempotency (
  scope TEXT NOT NULL, key TEXT NOT NULL, job_id TEXT NOT NULL, created_at BIGINT NOT NULL,
  PRIMARY KEY (scope, key));

CREATE TABLE policy_snapshots (
  version_hash TEXT PRIMARY KEY, created_at BIGINT NOT NULL, body TEXT NOT NULL);

-- Job leases: several workers share the queue of local jobs; a lease whose heartbeat stops
-- expires at `expires_at` and another worker takes the job over.
CREATE TABLE job_leases (
  job_id TEXT PRIMARY KEY, worker_id TEXT NOT NULL, acquired_at BIGINT NOT NULL,
  heartbeat_at BIGINT NOT NULL, expires_at BIGINT NOT NULL);
-- Round-robin across tenants: the tenant served longest ago (lowest seq, or none) goes first.
-- A sequence, not MAX(seq) + 1, so concurrent claims never share a number.
CREATE SEQUENCE tenant_claims_seq;
CREATE TABLE tenant_claims (tenant TEXT PRIMARY KEY, seq BIGINT NOT NULL);
