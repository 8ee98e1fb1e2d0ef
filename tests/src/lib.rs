//! The local AWS harness.
