-- v5: look-ups by model name. The upstream proxy serves a tenant an `ft:` model only when the
-- gateway lists it to that tenant (a succeeded job's `fine_tuned_model` or a mirrored
-- checkpoint), so every proxied request naming one asks these two indexes.
CREATE INDEX jobs_fine_tuned_model ON jobs(fine_tuned_model);
CREATE INDEX checkpoints_model ON checkpoints(fine_tuned_model_checkpoint);
