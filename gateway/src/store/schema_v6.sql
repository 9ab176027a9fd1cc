-- v6: look-ups by model name. The upstream proxy serves a tenant an `ft:` model only when the
-- gateway lists it to that tenant (a succeeded job's `fine_tuned_model` or a mirrored
-- checkpoint), so every proxied request naming one asks these two indexes.
CREATE INDEX jobs_fine_tuned_model ON jobs(fine_tuned_model);
CREATE INDEX checkpoints_model ON checkpoints(fine_tuned_model_checkpoint);
-- Which gateway replica drives each job (its runner polls the backend and evaluates upstream
-- checkpoints): one at a time, so replicas never repeat each other's provider calls. A holder
-- that stops renewing (it died) loses the job to another replica when `expires_at` passes.
CREATE TABLE runner_leases (
  job_id TEXT PRIMARY KEY, holder TEXT NOT NULL, expires_at INTEGER NOT NULL);
