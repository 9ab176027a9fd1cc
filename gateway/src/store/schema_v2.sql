-- v2: an upload remembers the `expires_after` its file gets when the upload completes, and
-- the part ids it was completed with (a JSON array), so a retried `complete` is answered.
ALTER TABLE uploads ADD COLUMN file_expires_after INTEGER;
ALTER TABLE uploads ADD COLUMN completed_part_ids TEXT;
