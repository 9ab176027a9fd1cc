//! Data-level defenses applied to a screened dataset.
