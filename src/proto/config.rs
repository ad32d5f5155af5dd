//! Every limit of the server, with its default, and the parsers for the values users type.

use std::time::Duration;

/// Default TCP port.
pub const DEFAULT_PORT: u16 = 45000;

/// Descriptors kept free for listeners, logs and busy replies when the connection limit is derived
/// from the open-file limit.
const MAX_HEADROOM: u64 = 256;

/// The server's limits. `Duration::ZERO` turns a timeout off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// Longest request line, in bytes, not counting its line end.
    pub max_line: usize,
    /// Most concurrent sessions; further connections get `ERR server busy`.
    pub max_connections: usize,
    /// Most concurrent sessions from one address (an IPv4 address or an IPv6 /64); further ones
    /// get `ERR too many connections from your address`. `None`: worked out from
    /// `max_connections` ([`ServerConfig::per_ip_limit`]); `Some(0)`: no per-address limit.
    pub max_connections_per_ip: Option<usize>,
    /// Close a session with no complete request for this long.
    pub idle_timeout: Duration,
    /// A partial line must be completed within this time of its first byte.
    pub line_timeout: Duration,
    /// Close a session whose pending output makes no progress for this long.
    pub write_timeout: Duration,
    /// Stop reading from a client once this many reply bytes wait to be sent to it.
    pub max_output: usize,
    /// On shutdown, how long to wait for sessions to finish.
    pub shutdown_grace: Duration,
    /// After the server closes its side, how long to keep reading (and discarding) so that late
    /// client bytes do not turn the close into a reset that destroys replies in flight.
    pub linger: Duration,
    /// Require a PROXY protocol (v1 or v2) header at the start of every connection, and use the
    /// client address it carries.
    pub proxy_protocol: bool,
    /// Event loops (threads) serving connections; 0: one per CPU this process may run on.
    pub threads: usize,
    /// How long to retry binding a port that closing connections hold (TIME_WAIT lasts 60 s on
    /// Linux) before giving up (zero: fail at once).
    pub bind_wait: Duration,
    /// How often the binary checks that the system clock is synchronised (kernel adjtimex
    /// state) and logs a change; zero: only at start-up.
    pub clock_check: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            max_line: 1024,
            max_connections: 10_000,
            max_connections_per_ip: None,
            idle_timeout: Duration::from_secs(300),
            line_timeout: Duration::from_secs(30),
            write_timeout: Duration::from_secs(30),
            max_output: 64 * 1024,
            shutdown_grace: Duration::from_secs(10),
            linger: Duration::from_secs(2),
            threads: 0,
            proxy_protocol: false,
            bind_wait: Duration::from_secs(90),
            clock_check: Duration::from_secs(60),
        }
    }
}

/// A setting outside its documented range: a usage error (jamd exits 2), said in one line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{setting} {value}: must be {range}")]
pub struct ConfigError {
    /// The flag that sets it (the environment variable is named in `--help`).
    pub setting: &'static str,
    /// The value given, as the user would write it.
    pub value: String,
    /// The documented range.
    pub range: &'static str,
}

/// Longest request line a server may be configured for: a request is a few bytes, and each
/// connection may hold this much of a partial line.
const MAX_LINE_LIMIT: usize = 64 * 1024;
/// Largest output cap: replies waiting for one client.
const MAX_OUTPUT_LIMIT: usize = 16 * 1024 * 1024;
/// Most connections a server may be configured for.
pub const MAX_CONNECTIONS_LIMIT: usize = 1_000_000;
/// Most event loops.
const MAX_THREADS: usize = 1024;
/// Longest timeout, grace or wait: past a day is a typo, not a setting.
const MAX_DURATION: Duration = Duration::from_secs(24 * 3600);

impl ServerConfig {
    /// Checks every setting against its documented range, before anything starts. Zero has one
    /// meaning per kind of setting: a timeout, grace or wait of 0 is off (or "at once"), and so is
    /// a per-address limit of 0; a size, a connection limit or a thread count of 0 is an error
    /// (`threads` 0 in this struct means one per CPU; the binary never sets it from a flag).
    pub fn validate(&self) -> Result<(), ConfigError> {
        let fail = |setting, value: String, range| {
            Err(ConfigError {
                setting,
                value,
                range,
            })
        };
        if !(1..=MAX_LINE_LIMIT).contains(&self.max_line) {
            return fail("--max-line", format_size(self.max_line), "1 to 64KiB bytes");
        }
        if !(1..=MAX_OUTPUT_LIMIT).contains(&self.max_output) {
            return fail(
                "--max-output",
                format_size(self.max_output),
                "1 to 16MiB bytes",
            );
        }
        if !(1..=MAX_CONNECTIONS_LIMIT).contains(&self.max_connections) {
            return fail(
                "--max-connections",
                self.max_connections.to_string(),
                "1 to 1000000",
            );
        }
        if let Some(n) = self.max_connections_per_ip
            && n > self.max_connections
        {
            return fail(
                "--max-connections-per-ip",
                n.to_string(),
                "0 (off), auto, or at most --max-connections",
            );
        }
        if self.threads > MAX_THREADS {
            return fail("--threads", self.threads.to_string(), "1 to 1024");
        }
        for (setting, value) in [
            ("--idle-timeout", self.idle_timeout),
            ("--line-timeout", self.line_timeout),
            ("--write-timeout", self.write_timeout),
            ("--shutdown-grace", self.shutdown_grace),
            ("--bind-wait", self.bind_wait),
            ("--clock-check", self.clock_check),
        ] {
            if value > MAX_DURATION {
                return fail(setting, format_duration(value), "0 (off) to 24h");
            }
        }
        Ok(())
    }

    /// The per-address limit in force: `None` when it is off.
    pub fn per_ip_limit(&self) -> Option<usize> {
        match self.max_connections_per_ip {
            None => Some(auto_limit(self.max_connections)),
            Some(0) => None,
            Some(n) => Some(n),
        }
    }
}

/// The default per-address limit for a connection limit: the larger of a quarter of it and
/// `min(it, 16)`, so no single address can lock the others out while normal use never notices.
fn auto_limit(max_connections: usize) -> usize {
    (max_connections / 4).max(max_connections.min(16))
}

/// Most bytes discarded while lingering after a close.
pub(crate) const LINGER_MAX_BYTES: usize = 64 * 1024;

/// The connection limit that fits in `open_files` descriptors, keeping some free.
pub fn connections_for_open_files(open_files: u64) -> usize {
    let headroom = (open_files / 8).clamp(16, MAX_HEADROOM);
    usize::try_from(open_files.saturating_sub(headroom).max(1)).unwrap_or(usize::MAX)
}

/// Raises the soft open-file limit to the hard limit and returns the limit now in force.
pub fn raise_open_file_limit() -> std::io::Result<u64> {
    let (soft, hard) = rlimit::Resource::NOFILE.get()?;
    if soft < hard {
        rlimit::Resource::NOFILE.set(hard, hard)?;
    }
    Ok(rlimit::Resource::NOFILE.get()?.0)
}

/// An error in a value given on the command line or in the environment.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ValueError(String);

/// Parses a duration: `30s`, `5m`, `1h30m`, `250ms`, or a bare number of seconds. `0` means off.
pub fn parse_duration(s: &str) -> Result<Duration, ValueError> {
    let s = s.trim();
    if let Ok(secs) = s.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    let signed: jiff::SignedDuration = s.parse().map_err(|_| {
        ValueError(format!(
            "invalid duration {s:?}: use a number of seconds or units, e.g. 30s, 5m, 1h, 250ms"
        ))
    })?;
    Duration::try_from(signed)
        .map_err(|_| ValueError(format!("duration {s:?} must not be negative")))
}

/// Parses a size in bytes: `1024`, `64KiB`, `1MiB` (also `k`/`KB`/`m`/`MB`, as binary units).
pub fn parse_size(s: &str) -> Result<usize, ValueError> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    let invalid = || {
        ValueError(format!(
            "invalid size {s:?}: use bytes or units, e.g. 1024, 64KiB, 1MiB"
        ))
    };
    let n: usize = digits.parse().map_err(|_| invalid())?;
    let scale: usize = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => return Err(invalid()),
    };
    n.checked_mul(scale).ok_or_else(invalid)
}

/// Formats a size the way users type it (`64KiB`, `1MiB`, `1000`); [`parse_size`] reads it back.
pub fn format_size(n: usize) -> String {
    for (unit, scale) in [("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)] {
        if n != 0 && n % scale == 0 {
            return format!("{}{unit}", n / scale);
        }
    }
    n.to_string()
}

/// Formats a duration the way users type it (`5m`, `30s`, `off`); [`parse_duration`] reads it
/// back, except `off` (type `0`).
pub fn format_duration(d: Duration) -> String {
    if d.is_zero() {
        return "off".to_string();
    }
    let secs = d.as_secs();
    let nanos = d.subsec_nanos();
    if nanos % 1_000_000 != 0 {
        // Sub-millisecond parts: whole microseconds if exact, else nanoseconds, so nothing is lost.
        if nanos % 1_000 == 0 {
            format!("{}us", d.as_micros())
        } else {
            format!("{}ns", d.as_nanos())
        }
    } else if nanos != 0 {
        format!("{}ms", d.as_millis())
    } else if secs % 3600 == 0 {
        format!("{}h", secs / 3600)
    } else if secs % 60 == 0 {
        format!("{}m", secs / 60)
    } else {
        format!("{secs}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_automatic_limit_is_a_quarter_but_never_below_sixteen_or_the_total() {
        assert_eq!(auto_limit(100), 25);
        assert_eq!(auto_limit(19_744), 4_936);
        assert_eq!(auto_limit(3), 3);
        assert_eq!(auto_limit(40), 16);
        assert_eq!(auto_limit(64), 16);
        assert_eq!(auto_limit(68), 17);
    }

    #[test]
    fn every_setting_is_checked_against_its_range() {
        assert_eq!(ServerConfig::default().validate(), Ok(()));
        let at = |f: fn(&mut ServerConfig)| {
            let mut c = ServerConfig::default();
            f(&mut c);
            c.validate().map_err(|e| e.to_string())
        };
        assert_eq!(
            at(|c| c.max_line = 0),
            Err("--max-line 0: must be 1 to 64KiB bytes".into())
        );
        assert_eq!(at(|c| c.max_line = MAX_LINE_LIMIT), Ok(()));
        assert_eq!(
            at(|c| c.max_line = 100 << 30),
            Err("--max-line 100GiB: must be 1 to 64KiB bytes".into())
        );
        assert_eq!(at(|c| c.max_line = 1), Ok(()));
        assert!(at(|c| c.max_output = 0).is_err());
        assert_eq!(at(|c| c.max_output = MAX_OUTPUT_LIMIT), Ok(()));
        assert!(at(|c| c.max_output = MAX_OUTPUT_LIMIT + 1).is_err());
        assert_eq!(
            at(|c| c.max_connections = 0),
            Err("--max-connections 0: must be 1 to 1000000".into())
        );
        assert_eq!(at(|c| c.max_connections = 1), Ok(()));
        assert_eq!(at(|c| c.max_connections = MAX_CONNECTIONS_LIMIT), Ok(()));
        assert!(at(|c| c.max_connections = MAX_CONNECTIONS_LIMIT + 1).is_err());
        assert_eq!(
            at(|c| c.max_connections_per_ip = Some(0)),
            Ok(()),
            "0 is off"
        );
        assert_eq!(at(|c| c.max_connections_per_ip = Some(10_000)), Ok(()));
        assert!(at(|c| c.max_connections_per_ip = Some(10_001)).is_err());
        assert_eq!(at(|c| c.threads = MAX_THREADS), Ok(()));
        assert_eq!(
            at(|c| c.threads = 100_000),
            Err("--threads 100000: must be 1 to 1024".into())
        );
        assert_eq!(at(|c| c.idle_timeout = Duration::ZERO), Ok(()), "0 is off");
        assert_eq!(at(|c| c.clock_check = MAX_DURATION), Ok(()));
        assert_eq!(
            at(|c| c.line_timeout = MAX_DURATION + Duration::from_secs(1)),
            Err("--line-timeout 86401s: must be 0 (off) to 24h".into())
        );
        for f in [
            (|c: &mut ServerConfig| c.idle_timeout = Duration::from_secs(86_401))
                as fn(&mut ServerConfig),
            |c| c.write_timeout = Duration::from_secs(86_401),
            |c| c.shutdown_grace = Duration::from_secs(86_401),
            |c| c.bind_wait = Duration::from_secs(86_401),
            |c| c.clock_check = Duration::from_secs(86_401),
        ] {
            assert!(at(f).is_err());
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30").ok(), Some(Duration::from_secs(30)));
        assert_eq!(parse_duration("0").ok(), Some(Duration::ZERO));
        assert_eq!(parse_duration("5m").ok(), Some(Duration::from_secs(300)));
        assert_eq!(
            parse_duration("250ms").ok(),
            Some(Duration::from_millis(250))
        );
        assert_eq!(
            parse_duration("1h30m").ok(),
            Some(Duration::from_secs(5400))
        );
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("-5s").is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1024").ok(), Some(1024));
        assert_eq!(parse_size("64KiB").ok(), Some(65536));
        assert_eq!(parse_size("64k").ok(), Some(65536));
        assert_eq!(parse_size("1MiB").ok(), Some(1 << 20));
        assert!(parse_size("lots").is_err());
        assert!(parse_size("12 parsecs").is_err());
    }

    #[test]
    fn durations_print_as_typed() {
        assert_eq!(format_duration(Duration::from_secs(300)), "5m");
        assert_eq!(format_duration(Duration::from_secs(30)), "30s");
        assert_eq!(format_duration(Duration::ZERO), "off");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1500ms");
    }

    #[test]
    fn formatted_durations_parse_back() {
        for d in [
            Duration::from_secs(1),
            Duration::from_secs(30),
            Duration::from_secs(90),
            Duration::from_secs(300),
            Duration::from_secs(3600),
            Duration::from_secs(5400),
            Duration::from_millis(250),
            Duration::from_millis(1500),
            Duration::from_micros(1500),
            Duration::from_nanos(1_000_000_001),
        ] {
            let typed = format_duration(d);
            assert_eq!(parse_duration(&typed).ok(), Some(d), "{typed}");
        }
        let defaults = ServerConfig::default();
        for d in [
            defaults.idle_timeout,
            defaults.line_timeout,
            defaults.write_timeout,
            defaults.shutdown_grace,
            defaults.bind_wait,
        ] {
            assert_eq!(parse_duration(&format_duration(d)).ok(), Some(d));
        }
    }

    #[test]
    fn formatted_sizes_parse_back() {
        assert_eq!(format_size(64 * 1024), "64KiB");
        assert_eq!(format_size(1 << 20), "1MiB");
        assert_eq!(format_size(1000), "1000");
        for n in [0, 1, 1000, 1024, 1536, 64 * 1024, 3 << 20, 2 << 30] {
            assert_eq!(parse_size(&format_size(n)).ok(), Some(n), "{n}");
        }
    }

    #[test]
    fn connection_limit_leaves_headroom() {
        assert_eq!(connections_for_open_files(20_000), 20_000 - 256);
        assert_eq!(connections_for_open_files(1024), 1024 - 128);
        assert_eq!(connections_for_open_files(64), 48);
        assert_eq!(connections_for_open_files(0), 1);
    }
}
