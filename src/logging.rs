//! Log set-up for the binaries: text or JSON on stderr, written by a separate thread so that a
//! slow terminal or pipe never blocks the server (lines are dropped instead, and counted).

use std::io::IsTerminal;

use tracing_appender::non_blocking::{NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::EnvFilter;

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Lines buffered for the logging thread before new ones are dropped.
const LOG_QUEUE: usize = 64 * 1024;

/// Installs the global logger. `level` is a level or `RUST_LOG`-style directives; without it
/// `RUST_LOG` applies, then `default_level`. Keep the guard alive: dropping it flushes the logs.
pub fn init(
    format: LogFormat,
    level: Option<&str>,
    default_level: &str,
) -> anyhow::Result<WorkerGuard> {
    let filter = match level {
        Some(level) => EnvFilter::try_new(level)
            .map_err(|e| anyhow::anyhow!("invalid log level {level:?}: {e}"))?,
        None => match std::env::var("RUST_LOG") {
            Ok(directives) if !directives.trim().is_empty() => EnvFilter::try_new(&directives)
                .map_err(|e| anyhow::anyhow!("invalid RUST_LOG {directives:?}: {e}"))?,
            _ => EnvFilter::new(default_level),
        },
    };
    let (writer, guard) = NonBlockingBuilder::default()
        .lossy(true)
        .buffered_lines_limit(LOG_QUEUE)
        .thread_name("jam-log")
        .finish(std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_target(false);
    let result = match format {
        LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    result.map_err(|e| anyhow::anyhow!("cannot install the logger: {e}"))?;
    Ok(guard)
}
