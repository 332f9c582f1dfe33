//! Inbound: who sent a request (signature schemes) and what becomes of it (the ingest use
//! case, its HTTP routes and its error bodies).

pub mod error;
pub mod ingest;
pub mod metrics;
pub mod outcome;
pub mod router;
pub mod signature;
pub mod verifiers;

pub use error::{ErrorBody, IngestError};
pub use ingest::{
    Accepted, EventWarning, Identity, Ingest, MAX_BODY_BYTES, RefusedEvent, SourceSecrets,
    WebhookDelivery,
};
pub use metrics::IngestMetrics;
pub use router::{Deadline, RouterConfig, router, router_for};
