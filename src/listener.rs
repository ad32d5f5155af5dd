//! Binding listening sockets: the default dual-stack `[::]` listener with its IPv4 fallback, and
//! the addresses given with `--listen`.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};

use socket2::{Domain, Protocol, Socket, Type};

/// Pending-connection queue length (memcached uses 1024; the kernel caps it at somaxconn).
pub const BACKLOG: i32 = 1024;

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
    /// The socket could not be bound (address in use, permission denied…).
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
}

/// Binds one listening socket with SO_REUSEADDR (a restart never fails on lingering connections)
/// and the listen backlog. An IPv6 wildcard address accepts IPv4 too unless `v6_only`. With
/// `reuse_port` (SO_REUSEPORT), several processes may listen on the same address; the kernel
/// spreads new connections over them.
pub fn bind(
    addr: SocketAddr,
    v6_only: bool,
    reuse_port: bool,
) -> Result<std::net::TcpListener, BindError> {
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
    socket.listen(BACKLOG).map_err(fail)?;
    Ok(socket.into())
}

/// Binds the default listener on `port`: `[::]` dual-stack, or `0.0.0.0` where IPv6 is missing.
pub fn bind_default(port: u16, reuse_port: bool) -> Result<Vec<std::net::TcpListener>, BindError> {
    let v6 = SocketAddr::from((Ipv6Addr::UNSPECIFIED, port));
    match bind(v6, false, reuse_port) {
        Ok(listener) => Ok(vec![listener]),
        Err(BindError::Bind { source, .. }) if ipv6_unavailable(&source) => {
            tracing::info!(error = %source, "IPv6 unavailable; listening on IPv4 only");
            Ok(vec![bind(
                SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)),
                true,
                reuse_port,
            )?])
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
/// every interface) and binds each. An IPv6 wildcard is dual-stack unless the IPv4 wildcard on
/// the same port is also listed.
pub fn bind_all(
    specs: &[String],
    reuse_port: bool,
) -> Result<Vec<std::net::TcpListener>, BindError> {
    let mut addrs = Vec::new();
    for spec in specs {
        for addr in resolve(spec)? {
            if !addrs.contains(&addr) {
                addrs.push(addr);
            }
        }
    }
    addrs
        .iter()
        .map(|&addr| {
            let v4_wildcard_too = addrs
                .iter()
                .any(|a| a.ip() == Ipv4Addr::UNSPECIFIED && a.port() == addr.port());
            bind(addr, v4_wildcard_too, reuse_port)
        })
        .collect()
}

fn resolve(spec: &str) -> Result<Vec<SocketAddr>, BindError> {
    let spec = spec.trim();
    let error = |reason: String| BindError::Address {
        addr: spec.to_string(),
        reason,
    };
    if let Some(port) = spec.strip_prefix(':') {
        let port: u16 = port.parse().map_err(|_| error("invalid port".into()))?;
        return Ok(vec![SocketAddr::from((Ipv6Addr::UNSPECIFIED, port))]);
    }
    if let Ok(addr) = spec.parse::<SocketAddr>() {
        return Ok(vec![addr]);
    }
    if !spec.contains(':') {
        return Err(error(
            "expected HOST:PORT, e.g. 127.0.0.1:45000, [::1]:45000 or :45000".into(),
        ));
    }
    let addrs: Vec<_> = spec
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
        let first = bind("127.0.0.1:0".parse().expect("addr"), true, false).expect("bind");
        let addr = first.local_addr().expect("addr");
        let err = bind(addr, true, false).expect_err("in use").to_string();
        assert!(err.contains(&addr.to_string()), "{err}");
        assert!(
            err.to_lowercase().contains("address already in use"),
            "{err}"
        );
    }
}
