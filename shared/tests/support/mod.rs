//! Test doubles shared by this crate's integration tests.

pub mod fake_vendor;
