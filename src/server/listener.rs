//! Binding listening sockets: the default dual-stack `[::]` listener with its IPv4 fallback, and
//! the addresses given with `--listen`. A port that closing connections hold (TIME_WAIT, see
//! [`crate::ports`]) is retried every second for a while; a port another server listens on fails
//! at once.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};

use crate::address;
use crate::config::format_duration;
use crate::ports;

/// Pending-connection queue length (memcached uses 1024; the kernel caps it at somaxconn).
const BACKLOG: i32 = 1024;

/// Errors binding a listener.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    /// The address could not be parsed or resolved.
    #[error("cannot use listen address {addr:?}: {reason}")]
    Address {
        /// What the user gave.
        addr: String,
        /// Why it cannot be used.
        reason: String,
    },
    /// The socket could not be bound (permission denied, address not available…).
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// Another server listens on the port.
    #[error(
        "cannot listen on {addr}: address already in use: another server is listening there \
         (`ss -ltnp 'sport = :{port}'` shows which)",
        port = addr.port()
    )]
    Listening {
        /// The address.
        addr: SocketAddr,
    },
    /// Connections that are not listening (closing ones in TIME_WAIT) held the port for the whole
    /// wait.
    #[error("cannot listen on {addr}: {reason}")]
    Held {
        /// The address.
        addr: SocketAddr,
        /// Why, what was waited, and the fix.
        reason: String,
    },
}

/// Binds `addr` like [`bind`]; while the port is in use but nothing listens on it, retries every
/// second for up to `wait`, logging once. Gives up at once when another server listens there,
/// when `wait` is zero, or where the kernel's tables cannot tell (not Linux).
async fn bind_waiting(
    addr: SocketAddr,
    v6_only: bool,
    reuse_port: bool,
    wait: Duration,
) -> Result<Bound, BindError> {
    let start = tokio::time::Instant::now();
    let mut logged = false;
    loop {
        let source = match bind(addr, v6_only, reuse_port) {
            Err(BindError::Bind { source, .. })
                if source.raw_os_error() == Some(libc::EADDRINUSE) =>
            {
                source
            }
            Ok(listener) => {
                if logged {
                    let waited = format_duration(Duration::from_secs(start.elapsed().as_secs()));
                    tracing::info!(%addr, waited, "the port is free again");
                }
                return Ok(listener);
            }
            other => return other,
        };
        match ports::listener_on(addr) {
            Some(true) => return Err(BindError::Listening { addr }),
            Some(false) => {}
            None => return Err(BindError::Bind { addr, source }),
        }
        let why = held_reason(addr.port());
        if start.elapsed() >= wait {
            let gave_up = if wait.is_zero() {
                "not waiting (--bind-wait 0)".to_string()
            } else {
                format!("gave up after {} (--bind-wait)", format_duration(wait))
            };
            return Err(BindError::Held {
                addr,
                reason: format!("{why}; {gave_up}"),
            });
        }
        if !logged {
            logged = true;
            tracing::warn!(
                "cannot listen on {addr} yet: {why}; retrying every second for up to {}",
                format_duration(wait)
            );
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Why a port is in use although nothing listens on it, with the fix where there is one.
fn held_reason(port: u16) -> String {
    let held = "the port is in use, but no server listens there";
    let connection = format!(
        "a connection bound to it holds it (a closed one for {} s, in TIME_WAIT)",
        ports::TIME_WAIT_SECS
    );
    match ports::exposed(port) {
        Some(true) => format!("{held}: {}", ports::explain_exposed(&[port])),
        Some(false) => format!("{held}: {connection}"),
        // /proc/sys hidden (systemd's ProcSubset=pid): the range is unknown, the fix may apply.
        None => format!(
            "{held}: {connection}; if it lies in the ephemeral port range \
             (net.ipv4.ip_local_port_range), reserve it: `{}`",
            ports::reserve_command(&[port])
        ),
    }
}

/// A socket bound to its address but not yet listening: the kernel takes no connection on it until
/// [`listen`]. jamd binds every address first and listens on all of them only then, so that while
/// it waits for one held port no client connects to another and waits unanswered (a load
/// balancer's TCP check would call such a server healthy).
#[derive(Debug)]
pub struct Bound {
    socket: Socket,
    addr: SocketAddr,
}

impl Bound {
    /// The address it is bound to (the port the kernel chose, for port 0).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket
            .local_addr()?
            .as_socket()
            .ok_or_else(|| io::Error::other("not an internet socket"))
    }
}

/// Starts listening (with the listen backlog) on every bound socket, all or none.
pub fn listen(bound: Vec<Bound>) -> Result<Vec<std::net::TcpListener>, BindError> {
    let mut listening = Vec::with_capacity(bound.len());
    for Bound { socket, addr } in bound {
        socket.listen(BACKLOG).map_err(|source| {
            // A bound socket does not keep SO_REUSEADDR sockets out: another server may have
            // taken the port while jamd waited for a held one.
            if source.raw_os_error() == Some(libc::EADDRINUSE) {
                BindError::Listening { addr }
            } else {
                BindError::Bind { addr, source }
            }
        })?;
        listening.push(socket.into());
    }
    Ok(listening)
}

/// Binds one socket with SO_REUSEADDR (a restart never fails on lingering connections); it does
/// not listen yet (see [`Bound`]). An IPv6 wildcard address accepts IPv4 too unless `v6_only`.
/// With `reuse_port` (SO_REUSEPORT), several processes may listen on the same address; the kernel
/// spreads new connections over them.
fn bind(addr: SocketAddr, v6_only: bool, reuse_port: bool) -> Result<Bound, BindError> {
    let fail = |source| BindError::Bind { addr, source };
    let socket =
        Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP)).map_err(fail)?;
    socket.set_reuse_address(true).map_err(fail)?;
    if reuse_port {
        socket.set_reuse_port(true).map_err(fail)?;
    }
    if addr.is_ipv6() {
        socket.set_only_v6(v6_only).map_err(fail)?;
    }
    socket.set_nonblocking(true).map_err(fail)?;
    socket.bind(&addr.into()).map_err(fail)?;
    Ok(Bound { socket, addr })
}

/// Binds the default listener on `port`: `[::]` dual-stack, or `0.0.0.0` where IPv6 is missing.
/// Waits out a held port as [`bind_waiting`] does.
pub async fn bind_default(
    port: u16,
    reuse_port: bool,
    wait: Duration,
) -> Result<Vec<Bound>, BindError> {
    let v6 = SocketAddr::from((Ipv6Addr::UNSPECIFIED, port));
    match bind_waiting(v6, false, reuse_port, wait).await {
        Ok(listener) => Ok(vec![listener]),
        Err(BindError::Bind { source, .. }) if ipv6_unavailable(&source) => {
            tracing::info!(error = %source, "IPv6 unavailable; listening on IPv4 only");
            let v4 = SocketAddr::from((Ipv4Addr::UNSPECIFIED, port));
            Ok(vec![bind_waiting(v4, true, reuse_port, wait).await?])
        }
        Err(e) => Err(e),
    }
}

fn ipv6_unavailable(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EAFNOSUPPORT | libc::EADDRNOTAVAIL | libc::EPROTONOSUPPORT)
    )
}

/// Resolves `--listen` values (`127.0.0.1:4000`, `[::1]:4000`, `localhost:4000`, or `:4000` for
/// every interface) and binds each, waiting out held ports as [`bind_waiting`] does. An IPv6
/// wildcard is dual-stack unless the IPv4 wildcard on the same port is also listed.
pub async fn bind_all(
    specs: &[String],
    reuse_port: bool,
    wait: Duration,
) -> Result<Vec<Bound>, BindError> {
    let mut addrs = Vec::new();
    for spec in specs {
        for addr in resolve(spec)? {
            if !addrs.contains(&addr) {
                addrs.push(addr);
            }
        }
    }
    let mut listeners = Vec::with_capacity(addrs.len());
    for &addr in &addrs {
        let v4_wildcard_too = addrs
            .iter()
            .any(|a| a.ip() == Ipv4Addr::UNSPECIFIED && a.port() == addr.port());
        listeners.push(bind_waiting(addr, v4_wildcard_too, reuse_port, wait).await?);
    }
    Ok(listeners)
}

/// The ports that `--listen`-style values name, without resolving names (0 asks for any port).
pub fn listen_ports(specs: &[String]) -> Vec<u16> {
    specs
        .iter()
        .filter_map(|spec| spec.trim().rsplit_once(':')?.1.parse().ok())
        .collect()
}

/// The addresses a `--listen`-style value names, resolved but not bound (what `--check-config`
/// checks).
pub fn resolve_listen(spec: &str) -> Result<Vec<SocketAddr>, BindError> {
    resolve(spec)
}

fn resolve(spec: &str) -> Result<Vec<SocketAddr>, BindError> {
    let parsed = address::parse(spec, address::Use::Listen).map_err(|e| BindError::Address {
        addr: e.text,
        reason: e.hint,
    })?;
    // Listen always parses a port.
    let port = parsed.port.unwrap_or_default();
    if parsed.host.is_empty() {
        return Ok(vec![SocketAddr::from((Ipv6Addr::UNSPECIFIED, port))]);
    }
    if let Ok(ip) = parsed.host.parse::<std::net::IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let error = |reason: String| BindError::Address {
        addr: spec.trim().to_string(),
        reason,
    };
    let addrs: Vec<_> = (parsed.host.as_str(), port)
        .to_socket_addrs()
        .map_err(|e| error(e.to_string()))?
        .collect();
    if addrs.is_empty() {
        return Err(error("the name has no addresses".into()));
    }
    Ok(addrs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bound_socket_takes_no_connection_until_it_listens() {
        let bound = bind("127.0.0.1:0".parse().expect("addr"), true, false).expect("bind");
        let addr = bound.local_addr().expect("addr");
        let refused = std::net::TcpStream::connect(addr).expect_err("not listening yet");
        assert_eq!(refused.kind(), io::ErrorKind::ConnectionRefused);
        let listening = listen(vec![bound]).expect("listen");
        assert_eq!(listening[0].local_addr().expect("addr"), addr);
        std::net::TcpStream::connect(addr).expect("listening now");
    }

    #[test]
    fn listen_specs_resolve() {
        assert_eq!(
            resolve("127.0.0.1:4000").expect("ip"),
            vec!["127.0.0.1:4000".parse::<SocketAddr>().expect("addr")]
        );
        assert_eq!(
            resolve(":4000").expect("port only"),
            vec!["[::]:4000".parse::<SocketAddr>().expect("addr")]
        );
        assert!(resolve("4000").is_err());
        assert!(resolve("127.0.0.1:99999").is_err());
        assert!(!resolve("localhost:4000").expect("localhost").is_empty());
    }

    #[test]
    fn a_port_in_use_is_a_clear_error() {
        let first = listen(vec![
            bind("127.0.0.1:0".parse().expect("addr"), true, false).expect("bind"),
        ])
        .expect("listen");
        let addr = first[0].local_addr().expect("addr");
        let err = bind(addr, true, false).expect_err("in use");
        assert!(err.to_string().contains(&addr.to_string()), "{err}");
        let source = std::error::Error::source(&err)
            .expect("the OS error")
            .to_string();
        assert!(
            source.to_lowercase().contains("address already in use"),
            "{source}"
        );
        // Said once: the OS error is the source, not also part of the message.
        assert!(!err.to_string().contains(&source), "{err}");
    }
}
