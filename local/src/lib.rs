//! Running profile-relay on one machine: `relay serve` and `relay demo`.

pub mod config;
pub mod demo;
pub mod disk;
pub mod relay;
pub mod ui;

pub use config::{ConfigError, LocalConfig};
pub use relay::{LocalRelay, Resumed, StartError, Stopped, Storage};
