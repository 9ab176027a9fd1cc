//! Upstream mode.
