//! Omnivibe (the agent profile of the token's owner): `wire` holds the bodies, `plan` decides the requests.

pub mod plan;
pub mod wire;
