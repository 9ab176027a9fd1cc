-- v3: job leases, so several worker processes share the queue of local jobs. A lease whose
-- heartbeat stops expires at `expires_at` and another worker takes the job over.
-- `tenant_claims.seq` orders tenants for round-robin fairness (the tenant served longest ago
-- goes first).
CREATE TABLE job_leases (
  job_id TEXT PRIMARY KEY, worker_id TEXT NOT NULL, acquired_at INTEGER NOT NULL,
  heartbeat_at INTEGER NOT NULL, expires_at INTEGER NOT NULL);
CREATE TABLE tenant_claims (tenant TEXT PRIMARY KEY, seq INTEGER NOT NULL);
