//! profile-relay's pure core: the canonical contact (`model`), the declarative mappings that
//! turn senders' payloads into contact changes (`mapping`), and planning — a change and what
//! is known of the vendor side → the exact vendor requests (`plan`, with each vendor's wire
//! bodies and planning rules in `vendors/<vendor>/`).
//!
//! Nothing here does I/O: no network, no clock reads, no files but the mapping file a caller
//! asks to load. Dependencies point one way: `vendors` (wire bodies, planning rules) and
//! `model` ← `mapping` ← `plan`; the adapters in `relay-shared` depend on this crate, never
//! the other way.

pub mod mapping;
pub mod model;
pub mod plan;
pub mod vendors;
