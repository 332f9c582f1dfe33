//! Logging set-up, done once per process.
//!
//! Inside Lambda (detected by `AWS_LAMBDA_FUNCTION_NAME`) logs are JSON lines so CloudWatch
//! Logs Insights can query fields; locally they are human-readable. `RUST_LOG` filters both.

use tracing_subscriber::EnvFilter;

/// Where the process runs, which decides the log format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line (Lambda, CloudWatch).
    Json,
    /// Compact human-readable lines (local CLI, tests).
    Pretty,
}

impl LogFormat {
    /// JSON when running inside AWS Lambda, pretty otherwise.
    pub fn detect() -> Self {
        if std::env::var_os("AWS_LAMBDA_FUNCTION_NAME").is_some() {
            Self::Json
        } else {
            Self::Pretty
        }
    }
}

/// Installs the global `tracing` subscriber at `info` unless `RUST_LOG` says otherwise; a
/// second call is a no-op.
pub fn init(format: LogFormat) {
    init_with_default(format, "info");
}

/// Like [`init`], with another default level (e.g. `warn` for commands whose output is a
/// report).
pub fn init_with_default(format: LogFormat, default_filter: &str) {
    let filter = quiet_libraries(
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter)),
    );
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let result = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .without_time() // CloudWatch stamps every line already
            .try_init(),
        LogFormat::Pretty => builder.compact().with_writer(std::io::stderr).try_init(),
    };
    // Already initialised (tests, or a binary calling twice): keep the first subscriber.
    let _ = result;
}

/// Libraries whose debug and trace records quote personal data are silenced whatever
/// `RUST_LOG` asks for: `rlibphonenumber` logs the digits of the numbers it parses.
fn quiet_libraries(filter: EnvFilter) -> EnvFilter {
    match "rlibphonenumber=off".parse() {
        Ok(directive) => filter.add_directive(directive),
        Err(_) => filter,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_phone_library_stays_silent_even_at_trace() {
        let filter = quiet_libraries(EnvFilter::new("trace"));
        assert!(
            filter.to_string().contains("rlibphonenumber=off"),
            "{filter}"
        );
    }
}
