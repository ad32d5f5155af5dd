//! Log set-up for the binaries: text or JSON on stderr, written by a separate thread so that a
//! slow terminal or pipe never blocks the server (lines are dropped instead, and counted).

use std::io::IsTerminal;

use tracing_appender::non_blocking::{NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::EnvFilter;

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Why the logger could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// The filter does not parse: a usage error.
    #[error(transparent)]
    Filter(#[from] FilterError),
    /// Another logger is installed already (a bug in the caller).
    #[error("cannot install the logger: {0}")]
    Install(String),
}

/// A log filter that does not parse: a usage error (jamd exits 2), never a silent logger.
#[derive(Debug, thiserror::Error)]
#[error(
    "invalid {source_name} {value:?}: {why}; expected a level (off, error, warn, info, debug, \
     trace) or TARGET=LEVEL directives, separated by commas"
)]
pub struct FilterError {
    /// Where the filter came from: `--log-level` or `RUST_LOG`.
    pub source_name: &'static str,
    /// The text given.
    pub value: String,
    /// What is wrong with it.
    pub why: String,
}

const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];

/// Parses `text` strictly: each comma-separated directive is a level, `TARGET=LEVEL` or a bare
/// target of this program (`jam`). Any other bare word is refused: tracing would take it for a
/// target name (`loud` would log only events from a module called `loud`, that is, nothing).
pub fn parse_filter(source_name: &'static str, text: &str) -> Result<EnvFilter, FilterError> {
    let fail = |why: String| FilterError {
        source_name,
        value: text.to_string(),
        why,
    };
    // tracing also takes the numbers 0-5 for levels.
    let is_level = |word: &str| {
        let word = word.trim();
        LEVELS.iter().any(|l| l.eq_ignore_ascii_case(word))
            || matches!(word, "0" | "1" | "2" | "3" | "4" | "5")
    };
    let is_target = |word: &str| {
        // `target` or `target[span{field}]`: the span part is tracing's to check.
        let target = word.trim().split('[').next().unwrap_or("");
        !target.is_empty()
            && target.split("::").all(|part| {
                !part.is_empty()
                    && part
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            })
    };
    // A bare word that is not a level must name this program's code (`jam`, `jam::server`):
    // tracing would take any word for a target, and `loud` would silence everything.
    let is_ours = |word: &str| {
        let target = word.trim().split('[').next().unwrap_or("");
        is_target(word) && (target == "jam" || target == "jamd" || target.starts_with("jam::"))
    };
    if text.trim().is_empty() {
        return Err(fail("it is empty".into()));
    }
    for directive in text.split(',') {
        match directive.split_once('=') {
            None if is_level(directive) || is_ours(directive) => {}
            None => return Err(fail(format!("{:?} is not a level", directive.trim()))),
            Some((target, level)) if is_target(target) && is_level(level) => {}
            Some((_, level)) if !is_level(level) => {
                return Err(fail(format!("{:?} is not a level", level.trim())));
            }
            Some((target, _)) => {
                return Err(fail(format!("{:?} is not a target", target.trim())));
            }
        }
    }
    EnvFilter::try_new(text).map_err(|e| fail(e.to_string()))
}

/// Text-format fields as logfmt: `key=value`, the value quoted (with `\"`, `\\` and `\n`
/// escapes) when it holds a space, `=`, a quote or a control character, or is empty, so that
/// `reason=client closed` never breaks a logfmt parser. The message comes first, unquoted.
fn logfmt_fields() -> impl for<'w> tracing_subscriber::fmt::FormatFields<'w> {
    use tracing_subscriber::field::MakeExt as _;
    tracing_subscriber::fmt::format::debug_fn(|writer, field, value| {
        if field.name() == "message" {
            return write!(writer, "{value:?}");
        }
        write!(
            writer,
            "{}={}",
            field.name(),
            logfmt_value(&format!("{value:?}"))
        )
    })
    .delimited(" ")
}

/// A value as logfmt writes it. A string field arrives already quoted by its `Debug` form (which
/// escapes as logfmt does); anything else is quoted only when it must be.
fn logfmt_value(text: &str) -> String {
    let plain = |t: &str| {
        !t.is_empty()
            && !t
                .chars()
                .any(|c| c == ' ' || c == '=' || c == '"' || c == '\\' || c.is_control())
    };
    let quoted = text.len() >= 2 && text.starts_with('"') && text.ends_with('"');
    if quoted && plain(&text[1..text.len() - 1]) {
        text[1..text.len() - 1].to_string()
    } else if quoted || plain(text) {
        text.to_string()
    } else {
        format!("{text:?}")
    }
}

/// Lines buffered for the logging thread before new ones are dropped.
const LOG_QUEUE: usize = 64 * 1024;

/// Installs the global logger. `level` is a level or `RUST_LOG`-style directives; without it
/// `RUST_LOG` applies, then `default_level`. Keep the guard alive: dropping it flushes the logs.
pub fn init(
    format: LogFormat,
    level: Option<&str>,
    default_level: &str,
) -> Result<WorkerGuard, LogError> {
    let filter = match level {
        Some(level) => parse_filter("--log-level", level)?,
        None => match std::env::var("RUST_LOG") {
            Ok(directives) if !directives.trim().is_empty() => {
                parse_filter("RUST_LOG", &directives)?
            }
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
            .fmt_fields(logfmt_fields())
            .try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    result.map_err(|e| LogError::Install(e.to_string()))?;
    Ok(guard)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logfmt_values_are_quoted_only_when_they_must_be() {
        assert_eq!(logfmt_value("client_closed"), "client_closed");
        assert_eq!(logfmt_value("127.0.0.1:5"), "127.0.0.1:5");
        assert_eq!(logfmt_value("client closed"), "\"client closed\"");
        assert_eq!(logfmt_value("a=b"), "\"a=b\"");
        assert_eq!(logfmt_value("say \"hi\""), "\"say \\\"hi\\\"\"");
        assert_eq!(logfmt_value(""), "\"\"");
        assert_eq!(logfmt_value("\"already quoted\""), "\"already quoted\"");
        assert_eq!(
            logfmt_value("\"quit\""),
            "quit",
            "a plain string needs no quotes"
        );
        assert_eq!(logfmt_value("line\nbreak"), "\"line\\nbreak\"");
    }

    #[test]
    fn levels_and_target_directives_parse_and_anything_else_is_refused() {
        for good in [
            "info",
            "WARN",
            "off",
            "jam=debug",
            "warn,jam::server=trace",
            " info ",
        ] {
            assert!(parse_filter("RUST_LOG", good).is_ok(), "{good}");
        }
        for (bad, why) in [
            ("loud", "\"loud\" is not a level"),
            ("wrn", "\"wrn\" is not a level"),
            ("jam=loud", "\"loud\" is not a level"),
            ("=info", "\"\" is not a target"),
            ("a b=info", "\"a b\" is not a target"),
            ("", "it is empty"),
            ("info,", "\"\" is not a level"),
        ] {
            let e = parse_filter("--log-level", bad).expect_err(bad);
            let text = e.to_string();
            assert!(text.starts_with("invalid --log-level"), "{text}");
            assert!(text.contains(why), "{bad}: {text}");
        }
    }
}
