//! `jam`: a TCP time server (`jamd`) and its client (`jam`).
//!
//! The protocol: a client sends lines ending in CR LF (LF alone and telnet's CR NUL are accepted
//! too). `TIME` is answered with `JAM hh:mm:ss` CR LF, the server's local time; `QUIT` closes the
//! session; blank lines are ignored; anything else gets one `ERR …` line and the session goes on.
//! Every complete request is answered, in order, however the bytes are split or batched.
//!
//! | module | owns |
//! |---|---|
//! | [`protocol`] | request parsing and reply encoding, no I/O |
//! | [`codec`] | line framing with a length cap, telnet command removal |
//! | [`responder`] | a session's protocol core without I/O: input bytes in, replies out |
//! | [`reply`] | server replies as a client reads them: the exact form and the course variants |
//! | [`clock`] | the time source behind a trait; local time per second, cached |
//! | [`config`] | every server limit with its default; value parsers |
//! | [`listener`] | binding the dual-stack listener and `--listen` addresses; waiting out held ports |
//! | [`ports`] | the kernel's port tables: listeners, the ephemeral range, reserved ports |
//! | [`proxy`] | PROXY protocol v1/v2 headers from load balancers: the real client address |
//! | [`server`] | the event loops (mio, one per thread): accept, limits, each connection from accept to close, deadlines, shutdown |
//! | [`service`] | what a listener speaks: jam, RFC 868 Time, RFC 867 Daytime |
//! | [`timesync`] | the kernel's clock-synchronisation state and the watcher that logs it |
//! | [`per_ip`] | open connections per client address (IPv4, IPv6 /64) for `--max-connections-per-ip` |
//! | [`privileges`] | `--user`/`--group`: dropping root once the ports are bound |
//! | [`metrics`] | per-thread counters, the OpenMetrics rendering, the `--metrics` HTTP endpoint |
//! | [`logging`] | non-blocking text/JSON logs for the binaries |
//! | [`client`] | async client, target parsing, clock-offset estimation |
//! | [`bench`] | the `jam bench` load generator |
//! | [`check`] | `jam check`: the grader that runs the assignment's cases against any time server |
//! | [`systemd`] | socket activation and `Type=notify` readiness |
//! | [`generate`] | `--generate`: shell completions and man pages from the clap definitions |

pub mod bench;
pub mod check;
pub mod client;
pub mod clock;
pub mod codec;
pub mod config;
pub mod generate;
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

pub use clock::{Clock, LocalClock, ManualClock, OffsetClock, SystemClock};
pub use config::ServerConfig;
pub use responder::CloseReason;
pub use server::{Server, Stats};
