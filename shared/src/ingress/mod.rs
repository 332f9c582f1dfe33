//! Everything between an inbound HTTP request and an accepted event: who may send it
//! (signature schemes) and, later, the router and its error responses.

pub mod signature;
