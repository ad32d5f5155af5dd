//! A small async client over the same codec: connect (with a deadline), send requests, read
//! replies, and estimate the offset between the local clock and a server's clock.

use std::net::SocketAddr;
use std::time::Duration;

use jiff::Timestamp;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout};

use crate::address;
use crate::clock::TimeOfDay;
use crate::config::DEFAULT_PORT;
use crate::protocol::escape_word;
use crate::reply::{LineEnd, Reply, TimeReply};

/// Where `jam` connects when no address is given.
pub const DEFAULT_TARGET: &str = "127.0.0.1:45000";

/// Longest reply line the client accepts.
const MAX_REPLY: usize = 4096;

/// Most bytes read (and thrown away) while waiting for the server to close after `QUIT`.
const QUIT_DISCARD: usize = 64 * 1024;

/// Longest wait for the server to close after `QUIT`: the replies are already in, so a server
/// that never closes (common in the course) costs this, not the whole `--timeout`.
pub const QUIT_GRACE: Duration = Duration::from_millis(300);

/// How a session ended after `QUIT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuitEnd {
    /// The server closed the connection, as the protocol says.
    Closed,
    /// The server kept it open past [`QUIT_GRACE`]; the client closed it.
    LeftOpen,
}

/// How long the client waits for more bytes after part of a line that has no line end yet; past
/// that the bytes are taken as a reply without a line end (a server that forgot CR LF).
const QUIET: Duration = Duration::from_secs(1);

/// Why a client operation failed. Each kind has its own process exit code.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The target could not be parsed: the text, and what is wrong with it or how to write it.
    #[error("invalid address {0:?}: {1}")]
    Address(String, String),
    /// A command line that cannot work as given.
    #[error("{0}")]
    Usage(String),
    /// The host name did not resolve.
    #[error("cannot resolve {host:?}: {reason}")]
    Dns {
        /// The name.
        host: String,
        /// The resolver's answer.
        reason: String,
    },
    /// Nothing listens at the address.
    #[error("connection refused by {0} (is jamd running?)")]
    Refused(SocketAddr),
    /// The operation did not finish in time.
    #[error("timed out after {after:?} {what}")]
    Timeout {
        /// What was being waited for.
        what: &'static str,
        /// The deadline.
        after: Duration,
    },
    /// The server answered something that is not a jam reply.
    #[error("invalid reply from server: \"{0}\"")]
    InvalidReply(String),
    /// A time reply that is not the exact form, where only the exact form is accepted.
    #[error(
        "invalid reply from server: \"{reply}\" ({differences}; --strict takes only JAM hh:mm:ss CR LF)"
    )]
    NotExact {
        /// The reply as sent, without its line end.
        reply: String,
        /// How it differs from the exact form.
        differences: String,
    },
    /// The server answered with an error line.
    #[error("server error: {0}")]
    Server(String),
    /// The server closed the connection before replying.
    #[error("the server closed the connection before replying")]
    Closed,
    /// Another network error.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

impl ClientError {
    /// The process exit code for this error (documented in `jam --help`).
    pub fn exit_code(&self) -> u8 {
        match self {
            ClientError::Address(..) | ClientError::Usage(_) => 2,
            ClientError::Refused(_) => 3,
            ClientError::Dns { .. } => 4,
            ClientError::Timeout { .. } => 5,
            ClientError::InvalidReply(_) | ClientError::NotExact { .. } => 6,
            ClientError::Server(_) => 7,
            ClientError::Closed | ClientError::Io { .. } => 8,
        }
    }
}

/// A parsed `HOST[:PORT]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Host name or IP address (without brackets).
    pub host: String,
    /// TCP port.
    pub port: u16,
}

impl Target {
    /// Parses `HOST[:PORT]` (the port defaults to 45000) with [`crate::address`], the parser
    /// `jamd --listen` uses too: each common mistake gets its hint.
    pub fn parse(s: &str) -> Result<Target, ClientError> {
        let parsed = address::parse(s, address::Use::Dial)
            .map_err(|e| ClientError::Address(e.text, e.hint))?;
        Ok(Target {
            host: parsed.host,
            port: parsed.port.unwrap_or(DEFAULT_PORT),
        })
    }

    /// Whether `text` names a port (`host:1`, `[::1]:1`), as opposed to a host alone.
    pub fn names_port(text: &str) -> bool {
        address::names_port(text)
    }

    /// Resolves the host to socket addresses.
    pub async fn resolve(&self) -> Result<Vec<SocketAddr>, ClientError> {
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((self.host.as_str(), self.port))
            .await
            .map_err(|e| ClientError::Dns {
                host: self.host.clone(),
                reason: e.to_string(),
            })?
            .collect();
        if addrs.is_empty() {
            return Err(ClientError::Dns {
                host: self.host.clone(),
                reason: "no addresses".into(),
            });
        }
        Ok(addrs)
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// One answered `TIME` request, timed with the local monotonic clock.
#[derive(Debug, Clone)]
pub struct TimeSample {
    /// The server's time of day.
    pub time: TimeOfDay,
    /// The reply as parsed: exact, or how it differs.
    pub reply: TimeReply,
    /// The reply as the server wrote it, without its line end.
    pub text: String,
    /// When the request was sent.
    pub sent: Instant,
    /// When the reply arrived.
    pub received: Instant,
}

impl TimeSample {
    /// Round-trip time.
    pub fn rtt(&self) -> Duration {
        self.received - self.sent
    }
}

/// A connection to a jam server.
#[derive(Debug)]
pub struct Client {
    stream: TcpStream,
    peer: SocketAddr,
    /// Bytes received but not yet taken as a line.
    pending: Vec<u8>,
    timeout: Duration,
}

impl Client {
    /// Resolves `target` and connects to the first address that answers, within `limit`.
    pub async fn connect(target: &Target, limit: Duration) -> Result<Client, ClientError> {
        let addrs =
            timeout(limit, target.resolve())
                .await
                .map_err(|_| ClientError::Timeout {
                    what: "resolving the host",
                    after: limit,
                })??;
        let mut last = None;
        for addr in addrs {
            match Client::connect_addr(addr, limit).await {
                Ok(client) => return Ok(client),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or(ClientError::Closed))
    }

    /// Connects to one address within `limit`.
    pub async fn connect_addr(addr: SocketAddr, limit: Duration) -> Result<Client, ClientError> {
        match timeout(limit, TcpStream::connect(addr)).await {
            Err(_) => Err(ClientError::Timeout {
                what: "connecting",
                after: limit,
            }),
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                Err(ClientError::Refused(addr))
            }
            Ok(Err(e)) => Err(ClientError::Io {
                context: format!("cannot connect to {addr}"),
                source: e,
            }),
            Ok(Ok(stream)) => {
                let _ = stream.set_nodelay(true);
                Ok(Client {
                    stream,
                    peer: addr,
                    pending: Vec::new(),
                    timeout: limit,
                })
            }
        }
    }

    /// The address connected to.
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// Sends one request line (CR LF is added).
    pub async fn send(&mut self, line: &str) -> Result<(), ClientError> {
        let mut bytes = Vec::with_capacity(line.len() + 2);
        bytes.extend_from_slice(line.as_bytes());
        bytes.extend_from_slice(b"\r\n");
        let write = self.stream.write_all(&bytes);
        match timeout(self.timeout, write).await {
            Err(_) => Err(ClientError::Timeout {
                what: "sending",
                after: self.timeout,
            }),
            Ok(Err(e)) => Err(io_error("cannot send", e)),
            Ok(Ok(())) => Ok(()),
        }
    }

    /// Reads the next reply line as raw bytes, its line end included (see [`LineEnd::split`]);
    /// `None` if the server closed the connection first. Bytes without a line end count as a line
    /// once the server closes or sends nothing more for [`QUIET`].
    pub async fn read_line(&mut self) -> Result<Option<Vec<u8>>, ClientError> {
        let deadline = Instant::now() + self.timeout;
        loop {
            if let Some(n) = crate::reply::line_len(&self.pending) {
                return Ok(Some(self.pending.drain(..n).collect()));
            }
            if self.pending.len() >= MAX_REPLY {
                return Err(ClientError::InvalidReply(format!(
                    "a reply line longer than {MAX_REPLY} bytes"
                )));
            }
            let partial = !self.pending.is_empty();
            let wait_until = if partial {
                deadline.min(Instant::now() + QUIET)
            } else {
                deadline
            };
            // Read only up to the line cap, so a flood never holds more than MAX_REPLY bytes.
            let mut buf = [0u8; MAX_REPLY];
            let room = MAX_REPLY - self.pending.len();
            let read = tokio::time::timeout_at(wait_until, self.stream.read(&mut buf[..room]));
            match read.await {
                Err(_) if partial => return Ok(Some(std::mem::take(&mut self.pending))),
                Err(_) => {
                    return Err(ClientError::Timeout {
                        what: "waiting for a reply",
                        after: self.timeout,
                    });
                }
                Ok(Err(e)) => return Err(io_error("cannot read the reply", e)),
                Ok(Ok(0)) if partial => return Ok(Some(std::mem::take(&mut self.pending))),
                Ok(Ok(0)) => return Ok(None),
                Ok(Ok(n)) => self.pending.extend_from_slice(&buf[..n]),
            }
        }
    }

    /// Sends `TIME` and returns the server's time of day, timed. A variant of the exact reply is
    /// accepted; [`TimeSample::reply`] says how it differs.
    pub async fn time(&mut self) -> Result<TimeSample, ClientError> {
        let sent = Instant::now();
        self.send("TIME").await?;
        let line = self.read_line().await?.ok_or(ClientError::Closed)?;
        let received = Instant::now();
        match Reply::parse(&line) {
            Reply::Time(reply) => Ok(TimeSample {
                time: reply.time,
                reply,
                // A time reply holds only digits, separators and `JAM `: nothing to escape.
                text: String::from_utf8_lossy(LineEnd::split(&line).0).into_owned(),
                sent,
                received,
            }),
            Reply::Error(message) => Err(ClientError::Server(message.to_string())),
            Reply::Invalid(_) => Err(ClientError::InvalidReply(escaped(LineEnd::split(&line).0))),
        }
    }

    /// Sends `QUIT` and waits at most [`QUIT_GRACE`] (or the timeout, if shorter) for the server
    /// to close; says whether it did.
    pub async fn quit(&mut self) -> Result<QuitEnd, ClientError> {
        self.send("QUIT").await?;
        // Wait for the server's close, discarding what comes first, but never more than
        // QUIT_DISCARD bytes: a server that floods after QUIT costs nothing.
        let mut sink = [0u8; 4096];
        let mut discarded = 0;
        let closed = timeout(self.timeout.min(QUIT_GRACE), async {
            while discarded < QUIT_DISCARD {
                match self.stream.read(&mut sink).await {
                    Ok(0) | Err(_) => return true,
                    Ok(n) => discarded += n,
                }
            }
            false
        })
        .await;
        Ok(if closed == Ok(true) {
            QuitEnd::Closed
        } else {
            QuitEnd::LeftOpen
        })
    }
}

fn io_error(context: &str, source: std::io::Error) -> ClientError {
    ClientError::Io {
        context: context.to_string(),
        source,
    }
}

/// A reply shown safely: control bytes and invalid UTF-8 escaped, cut at 32 characters.
pub fn escaped(bytes: &[u8]) -> String {
    let mut s = String::new();
    escape_word(bytes, &mut s);
    s
}

/// The result of `jam offset`: the server clock minus the local clock.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OffsetEstimate {
    /// Best estimate of server clock − local clock, in seconds (the zone difference removed).
    pub offset: f64,
    /// Half-width of the interval the true offset is known to lie in, in seconds.
    pub uncertainty: f64,
    /// The server's apparent UTC offset (a whole number of quarter hours), in seconds.
    pub zone_offset: i32,
    /// Smallest round-trip time seen, in seconds.
    pub min_rtt: f64,
    /// Requests used.
    pub samples: usize,
    /// The first reply: whether the server answers in the exact form, and how it differs.
    pub reply: TimeReply,
}

/// Bounds on the clock offset, narrowed by each sample.
///
/// A reply `s` (the server's whole second) to a request sent at local time `t0` and answered at
/// `t1` says the server read its clock at some local instant `τ` in `[t0, t1]` and that
/// `s ≤ τ + offset < s + 1`, so `offset ∈ [s − t1, s + 1 − t0)`. Intersecting these intervals over
/// samples narrows the offset to about one round-trip time, provided some samples straddle a
/// second boundary of the server's clock; [`estimate_offset`] times its requests so that they do.
#[derive(Debug, Clone, Copy)]
struct OffsetBounds {
    lo: f64,
    hi: f64,
}

impl OffsetBounds {
    /// No knowledge yet.
    pub fn new() -> Self {
        OffsetBounds {
            lo: f64::NEG_INFINITY,
            hi: f64::INFINITY,
        }
    }

    /// Adds one sample: server second `s` for a request sent at local time `t0`, answered at `t1`
    /// (all in seconds on the same time line).
    pub fn add(&mut self, s: f64, t0: f64, t1: f64) {
        self.lo = self.lo.max(s - t1);
        self.hi = self.hi.min(s + 1.0 - t0);
    }

    /// The midpoint and half-width.
    pub fn estimate(&self) -> (f64, f64) {
        ((self.lo + self.hi) / 2.0, (self.hi - self.lo) / 2.0)
    }

    /// Whether the samples contradict each other (the server's clock jumped, or replies are wrong).
    pub fn is_empty(&self) -> bool {
        self.lo > self.hi
    }
}

impl Default for OffsetBounds {
    fn default() -> Self {
        Self::new()
    }
}

const DAY: f64 = 86_400.0;

/// Wraps a difference of times of day into (−12 h, +12 h].
fn wrap_day(d: f64) -> f64 {
    let d = d.rem_euclid(DAY);
    if d > DAY / 2.0 { d - DAY } else { d }
}

/// Estimates the server's clock offset with `rounds` requests timed to straddle its second
/// boundary; see [`OffsetBounds`]. The server reports only a local time of day, so its zone offset
/// is taken as the nearest quarter hour and offsets beyond ±7.5 minutes cannot be told from it.
pub async fn estimate_offset(
    client: &mut Client,
    rounds: usize,
) -> Result<OffsetEstimate, ClientError> {
    // One time line for the whole measurement: the wall clock once, then the monotonic clock.
    let base_instant = Instant::now();
    let base_wall = Timestamp::now().as_nanosecond() as f64 / 1e9;
    let wall = |at: Instant| base_wall + (at - base_instant).as_secs_f64();

    let first = client.time().await?;
    if first.reply.line_end == LineEnd::Missing {
        return Err(ClientError::InvalidReply(format!(
            "\"{}\" has no line end, so when a reply arrives cannot be timed",
            escaped(&first.time.hh_mm_ss())
        )));
    }
    let tod = |t: TimeOfDay| {
        f64::from(t.hour()) * 3600.0 + f64::from(t.minute()) * 60.0 + f64::from(t.second())
    };
    let raw = wrap_day(tod(first.time) - wall(first.sent).rem_euclid(DAY));
    let zone_offset = ((raw / 900.0).round() * 900.0) as i32;
    // The server's second as a Unix time near the local send time.
    let unwrap = |sample: &TimeSample| {
        let t0 = wall(sample.sent);
        let utc_tod = tod(sample.time) - f64::from(zone_offset);
        t0 + wrap_day(utc_tod - t0.rem_euclid(DAY))
    };

    let mut bounds = OffsetBounds::new();
    let mut samples = 0;
    let mut min_rtt = f64::INFINITY;
    let mut record = |sample: &TimeSample, bounds: &mut OffsetBounds, min_rtt: &mut f64| {
        let s = unwrap(sample).round();
        bounds.add(s, wall(sample.sent), wall(sample.received));
        *min_rtt = min_rtt.min(sample.rtt().as_secs_f64());
        samples += 1;
    };
    record(&first, &mut bounds, &mut min_rtt);

    // Phase 1: a request every 20 ms until the server's second changes, which bounds the offset
    // to about 20 ms plus a round trip, within about one second.
    let mut last = first.time;
    let phase1_end = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < phase1_end {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let sample = client.time().await?;
        record(&sample, &mut bounds, &mut min_rtt);
        if sample.time != last {
            break;
        }
        last = sample.time;
    }

    // Phase 2: bisection. Aim each request so the server reads its clock when the current
    // estimate says its second turns over; the reply tells on which side the truth lies.
    for _ in 0..rounds {
        let (mid, _) = bounds.estimate();
        let rtt = if min_rtt.is_finite() { min_rtt } else { 0.0 };
        let now = wall(Instant::now());
        // Local time at which server time (≈ local + mid) reaches the next whole second,
        // at least 50 ms from now.
        let boundary = ((now + 0.05 + mid).ceil()) - mid;
        let send_at = boundary - rtt / 2.0;
        let wait = (send_at - now).max(0.0);
        tokio::time::sleep(Duration::from_secs_f64(wait)).await;
        let sample = client.time().await?;
        record(&sample, &mut bounds, &mut min_rtt);
    }
    if bounds.is_empty() {
        return Err(ClientError::InvalidReply(
            "the server's replies contradict each other (did its clock jump?)".into(),
        ));
    }
    let (offset, uncertainty) = bounds.estimate();
    Ok(OffsetEstimate {
        offset,
        uncertainty,
        zone_offset,
        min_rtt,
        samples,
        reply: first.reply,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse() {
        let t = |s| Target::parse(s).expect(s);
        assert_eq!(
            t("127.0.0.1"),
            Target {
                host: "127.0.0.1".into(),
                port: 45000
            }
        );
        assert_eq!(
            t("127.0.0.1:4000"),
            Target {
                host: "127.0.0.1".into(),
                port: 4000
            }
        );
        assert_eq!(
            t("[::1]:4000"),
            Target {
                host: "::1".into(),
                port: 4000
            }
        );
        assert_eq!(
            t("[::1]"),
            Target {
                host: "::1".into(),
                port: 45000
            }
        );
        assert_eq!(
            t("::1"),
            Target {
                host: "::1".into(),
                port: 45000
            }
        );
        assert_eq!(
            t("time.lab"),
            Target {
                host: "time.lab".into(),
                port: 45000
            }
        );
        assert_eq!(t("[::1]:4000").to_string(), "[::1]:4000");
        for bad in ["", ":4000", "host:port", "[::1", "[::1]x", "h:99999"] {
            assert!(Target::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn an_address_mistake_is_a_usage_error_with_its_hint() {
        let e = Target::parse("::1:48002").expect_err("no brackets");
        assert_eq!(e.exit_code(), 2);
        assert_eq!(
            e.to_string(),
            "invalid address \"::1:48002\": put an IPv6 address in brackets when a port \
             follows: [::1]:48002"
        );
        assert_eq!(Target::parse("::1").expect("bare IPv6").port, 45000);
        assert!(Target::names_port("h:1") && !Target::names_port("h"));
    }

    #[test]
    fn exit_codes_are_distinct() {
        let codes = [
            ClientError::Address(String::new(), String::new()).exit_code(),
            ClientError::Refused("127.0.0.1:1".parse().expect("addr")).exit_code(),
            ClientError::Dns {
                host: String::new(),
                reason: String::new(),
            }
            .exit_code(),
            ClientError::Timeout {
                what: "",
                after: Duration::ZERO,
            }
            .exit_code(),
            ClientError::InvalidReply(String::new()).exit_code(),
            ClientError::Server(String::new()).exit_code(),
            ClientError::Closed.exit_code(),
        ];
        let mut unique = codes.to_vec();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), codes.len());
        assert!(!codes.contains(&0) && !codes.contains(&1));
    }

    #[test]
    fn a_sample_straddling_a_boundary_narrows_the_offset() {
        // True offset +0.3 s. Local send at 99.65, reply at 99.75: the server read its clock
        // at some instant in [99.95, 100.05] of its own time; it said 99 or 100.
        let mut b = OffsetBounds::new();
        b.add(99.0, 99.0, 99.1);
        let (_, wide) = b.estimate();
        assert!((wide - 0.55).abs() < 1e-9);
        b.add(100.0, 99.65, 99.75);
        let (mid, half) = b.estimate();
        assert!(half < 0.5);
        assert!((mid - 0.3).abs() <= half + 1e-9, "{mid} ± {half}");
    }

    #[test]
    fn day_wrap() {
        assert_eq!(wrap_day(86_000.0), -400.0);
        assert_eq!(wrap_day(-86_000.0), 400.0);
        assert_eq!(wrap_day(25_200.0), 25_200.0);
    }
}
