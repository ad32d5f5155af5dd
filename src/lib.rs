//! `jam`: a TCP time server (`jamd`) and its client (`jam`).
//!
//! The protocol: a client sends lines ending in CR LF (LF alone and telnet's CR NUL are accepted
//! too). `TIME` is answered with `JAM hh:mm:ss` CR LF, the server's local time; `QUIT` closes the
//! session; blank lines are ignored; anything else gets one `ERR …` line and the session goes on.
//! Every complete request is answered, in order, however the bytes are split or batched.
//!
//! The modules form layers: a module imports only from its own layer and the layers listed before
//! it.
//!
//! | layer | module | owns |
//! |---|---|---|
//! | pure core (no I/O) | [`codec`] | line framing with a length cap, telnet command removal |
//! | | [`address`] | `HOST[:PORT]` as people write it, for dialling and listening, with a hint per mistake |
//! | | [`protocol`] | request parsing and reply encoding; error lines and their kinds |
//! | | [`responder`] | a session's protocol core: input bytes in, replies out; why a session ends |
//! | | [`clock`] | the time source behind a trait; local time per second, cached |
//! | | [`reply`] | server replies as a client reads them: the exact form and the course variants |
//! | | [`config`] | every server limit with its default; value parsers |
//! | | [`per_ip`] | open connections per client address (IPv4, IPv6 /64) for `--max-connections-per-ip` |
//! | | [`proxy`] | PROXY protocol v1/v2 headers from load balancers: the real client address |
//! | | [`service`] | what a listener speaks: jam, RFC 868 Time, RFC 867 Daytime |
//! | web | [`http`] | a small read-only HTTP server for the metrics endpoint and the class board |
//! | server | [`metrics`] | per-thread counters, the OpenMetrics rendering, the `--metrics` HTTP endpoint |
//! | | [`server`] | the event loops (mio, one per thread): accept, limits, each connection from accept to close, deadlines, shutdown |
//! | | [`listener`], [`ports`] | binding the dual-stack listener and `--listen` addresses; the kernel's port tables, held ports |
//! | | [`systemd`] | socket activation and `Type=notify` readiness |
//! | | [`timesync`] | the kernel's clock-synchronisation state and the watcher that logs it |
//! | | [`privileges`] | `--user`/`--group`: dropping root once the ports are bound |
//! | client tools | [`client`] | async client, target parsing, clock-offset estimation |
//! | | [`bench`](mod@bench) | the `jam bench` load generator |
//! | | [`check`] | `jam check`: the grader that runs the assignment's cases against any time server |
//! | binaries' shared parts | [`logging`] | non-blocking text/JSON logs |
//! | | [`generate`] | `--generate`: shell completions and man pages from the clap definitions |

pub mod address;
pub mod bench;
pub mod check;
pub mod client;
pub mod clock;
pub mod codec;
pub mod config;
pub mod generate;
pub mod http;
pub mod listener;
pub mod logging;
pub mod metrics;
pub mod per_ip;
pub mod ports;
pub mod privileges;
pub mod protocol;
pub mod proxy;
pub mod reply;
pub mod responder;
pub mod server;
pub mod service;
pub mod systemd;
pub mod timesync;

#[cfg(any(test, feature = "test-util"))]
pub use clock::ManualClock;
pub use clock::{Clock, LocalClock, OffsetClock, SystemClock};
pub use config::ServerConfig;
pub use responder::CloseReason;
pub use server::{Server, Stats};
