//! Chatwoot contacts on the Omnivibe host: `wire` holds the bodies, `plan` decides the requests.

pub mod plan;
pub mod wire;
