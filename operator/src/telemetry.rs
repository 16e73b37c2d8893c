//! Logging setup: a tracing subscriber writing JSON (for log pipelines) or text (for people).

use tracing_subscriber::EnvFilter;

/// Filter used when RUST_LOG is unset or unparsable; kube and hyper are chatty at info.
pub const DEFAULT_FILTER: &str = "info,kube=warn,hyper=warn";

/// Log output format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One JSON object per line, with target and fields.
    #[default]
    Json,
    /// Human-readable lines.
    Text,
}

/// Installs the global subscriber. Safe to call more than once (tests, embedding): later calls
/// keep the first subscriber instead of panicking.
pub fn init(format: LogFormat) {
    let filter = env_filter(std::env::var("RUST_LOG").ok().as_deref());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(true)
        .with_writer(std::io::stderr);
    let result = match format {
        // Fields are flattened to the top level so log pipelines can index them directly.
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
        LogFormat::Text => builder.try_init(),
    };
    // An error only means a subscriber is already installed, which is what idempotence wants.
    let _ = result;
}

/// The filter from a RUST_LOG value, falling back to [`DEFAULT_FILTER`] when it is absent or
/// invalid: a typo in RUST_LOG should not silence the operator.
fn env_filter(rust_log: Option<&str>) -> EnvFilter {
    rust_log
        .filter(|s| !s.trim().is_empty())
        .and_then(|s| EnvFilter::try_new(s).ok())
        .unwrap_or_else(|| EnvFilter::new(DEFAULT_FILTER))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    #[test]
    fn filter_defaults_and_respects_rust_log() {
        // EnvFilter prints directives in its own order, so compare against a parsed default.
        let default = EnvFilter::new(DEFAULT_FILTER).to_string();
        assert_eq!(env_filter(None).to_string(), default);
        assert_eq!(env_filter(Some("  ")).to_string(), default);
        assert_eq!(env_filter(Some("debug")).to_string(), "debug");
        assert_eq!(env_filter(Some("kube=[[bad")).to_string(), default);
    }

    #[test]
    fn init_is_idempotent() {
        init(LogFormat::Json);
        init(LogFormat::Text);
        tracing::info!(answer = 42, "still logging");
    }

    #[test]
    fn log_format_parses_from_cli() {
        use clap::ValueEnum;
        assert_eq!(LogFormat::from_str("json", true), Ok(LogFormat::Json));
        assert_eq!(LogFormat::from_str("text", true), Ok(LogFormat::Text));
    }
}
