//! One module per subcommand: its arguments (`Args`) and what it does (`run`).

use std::path::PathBuf;

use relay_shared::mapping::Mappings;

pub mod check_config;
pub mod demo;
pub mod dlq;
pub mod events;
pub mod plan;
pub mod replay;
pub mod send;
pub mod serve;

/// The mapping file at `path`, or the built-in mappings.
pub fn load_mappings(path: Option<&PathBuf>) -> Result<Mappings, relay_shared::mapping::LoadError> {
    relay_shared::assembly::load_mappings(path.map(PathBuf::as_path))
}
