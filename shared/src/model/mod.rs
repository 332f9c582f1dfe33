//! The canonical model every source maps into and every vendor plan starts from.

pub mod redact;
