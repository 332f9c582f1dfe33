//! Channel.io (Open API v5 users): `wire` holds the bodies, `plan` decides the requests.

pub mod plan;
pub mod wire;
