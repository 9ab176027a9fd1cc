-- v2: an upload remembers the `expires_after` its file gets when the upload completes.
ALTER TABLE uploads ADD COLUMN file_expires_after INTEGER;
