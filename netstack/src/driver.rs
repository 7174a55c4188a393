//! Tokio driver (next).
