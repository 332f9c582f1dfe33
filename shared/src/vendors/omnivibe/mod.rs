//! See `wire` for the request and response bodies.

pub mod wire;
