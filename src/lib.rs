//! `jam`: a TCP time server (`jamd`) and its client (`jam`).
//!
//! The protocol: a client sends lines ending in CR LF (LF alone and telnet's CR NUL are accepted
//! too). `TIME` is answered with `JAM hh:mm:ss` CR LF, the server's local time; `QUIT` closes the
//! session; blank lines are ignored; anything else gets one `ERR …` line and the session goes on.
//! Every complete request is answered, in order, however the bytes are split or batched.
//!
//! The modules form layers, one folder each: a module imports only from its own layer and the
//! layers listed before it. The folders are private; the modules that the binaries, the
//! integration tests, the fuzz targets and the benchmarks use are re-exported at the root
//! (`jam::codec`, `jam::metrics`, `jam::check`…), and the rest stays inside the crate.
//!
//! | layer | folder | module | owns |
//! |---|---|---|---|
//! | pure core (no I/O) | `src/proto/` | [`codec`] | line framing with a length cap, telnet command removal |
//! | | | [`address`] | `HOST[:PORT]` as people write it, for dialling and listening, with a hint per mistake |
//! | | | [`protocol`] | request parsing and reply encoding; error lines and their kinds |
//! | | | [`responder`] | a session's protocol core: input bytes in, replies out; why a session ends |
//! | | | [`clock`] | the time source behind a trait; local time per second, cached |
//! | | | [`config`] | every server limit with its default; value parsers |
//! | | | [`service`] | what a listener speaks: jam, RFC 868 Time, RFC 867 Daytime |
//! | web | `src/http.rs` | `http` | a small read-only HTTP server for the metrics endpoint and the class board |
//! | server | `src/server/` | [`server`] | the event loops (mio, one per thread): accept, limits, each connection from accept to close, deadlines, shutdown |
//! | | | `per_ip` | open connections per client address (IPv4, IPv6 /64) for `--max-connections-per-ip` |
//! | | | [`proxy`] | PROXY protocol v1/v2 headers from load balancers: the real client address |
//! | | | [`metrics`] | per-thread counters, the OpenMetrics rendering, the `--metrics` HTTP endpoint |
//! | | | [`listener`], [`ports`] | binding the dual-stack listener and `--listen` addresses; the kernel's port tables, held ports |
//! | | | [`systemd`] | socket activation and `Type=notify` readiness |
//! | | | [`timesync`] | the kernel's clock-synchronisation state and the watcher that logs it |
//! | | | [`privileges`] | `--user`/`--group`: dropping root once the ports are bound |
//! | client tools | `src/tools/` | [`client`] | async client, target parsing, clock-offset estimation |
//! | | | [`reply`] | server replies as a client reads them: the exact form and the course variants |
//! | | | [`bench`](mod@bench) | the `jam bench` load generator |
//! | | | [`check`] | `jam check`: the grader that runs the assignment's cases against any time server |
//! | binaries' shared parts | `src/` | [`logging`] | non-blocking text/JSON logs |
//! | | | [`generate`] | `--generate`: shell completions and man pages from the clap definitions |

mod http;
mod proto;
pub mod server;
mod tools;

pub mod generate;
pub mod logging;

// The library's edge: each module that the binaries, the integration tests, the fuzz targets or
// the benchmarks import, under the short name they use (`jam::codec`, `jam::check`…).
pub use proto::{address, clock, codec, config, protocol, responder, service};
pub use server::{listener, metrics, ports, privileges, proxy, systemd, timesync};
pub use tools::{bench, check, client, reply};

// Used inside the crate only, by its old short name.
pub(crate) use server::per_ip;

// The types most callers start from.
#[cfg(any(test, feature = "test-util"))]
pub use clock::ManualClock;
pub use clock::{LocalClock, OffsetClock, SystemClock};
pub use config::ServerConfig;
pub use responder::CloseReason;
pub use server::{Server, Stats};
