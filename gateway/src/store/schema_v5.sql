-- v5: a job's revision, advanced by every write of the job row. The runner's write of a step
-- (and of each poll's observations) applies only to the revision it read, so two gateway
-- replicas driving the same job never both record one poll: the second is refused and reads
-- the job again.
ALTER TABLE jobs ADD COLUMN revision INTEGER NOT NULL DEFAULT 0;
