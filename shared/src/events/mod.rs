//! Tolerant decoders for the AWS events kiln receives.
//!
//! Real payloads carry `null`s and omit fields (see the fixtures), so these
//! types make almost everything optional and ignore what they don't use.
