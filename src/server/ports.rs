//! What the kernel knows about a port (Linux; elsewhere every answer is "cannot tell"): whether a
//! socket listens on it (`/proc/self/net/tcp{,6}`, which systemd's `ProcSubset=pid` leaves
//! visible), the ephemeral range that outgoing connections take their source ports from, and the
//! ports reserved from that range.
//!
//! Why it matters: the default port 45000 lies in Linux's default ephemeral range (32768–60999).
//! An outgoing connection that got 45000 as its source port holds it for 60 s after it closes
//! (TIME_WAIT), and a server cannot bind it meanwhile although nothing listens.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The sysctl that keeps ports out of the ephemeral range.
const RESERVED_PORTS_SYSCTL: &str = "net.ipv4.ip_local_reserved_ports";

/// The file the jamd Debian package installs to reserve the default port at every boot.
pub const SYSCTL_FILE: &str = "/usr/lib/sysctl.d/50-jamd.conf";

/// How long Linux keeps a closed connection's port in TIME_WAIT, in seconds.
pub(crate) const TIME_WAIT_SECS: u64 = 60;

const LISTEN: &str = "0A";

/// Whether a socket listening on `addr`'s port could be what keeps `addr` from binding. `None`
/// when the kernel's tables cannot be read (not Linux, or no `/proc`).
pub(crate) fn listener_on(addr: SocketAddr) -> Option<bool> {
    let mut readable = false;
    let mut found = false;
    for table in ["/proc/self/net/tcp", "/proc/self/net/tcp6"] {
        // tcp6 is missing where IPv6 is off; tcp alone still answers.
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        readable = true;
        found |= listening_addrs(&text)
            .any(|listener| listener.port() == addr.port() && overlap(listener.ip(), addr.ip()));
    }
    readable.then_some(found)
}

/// The listening addresses in a `/proc/net/tcp` or `/proc/net/tcp6` table.
fn listening_addrs(table: &str) -> impl Iterator<Item = SocketAddr> + '_ {
    table.lines().skip(1).filter_map(|line| {
        let mut fields = line.split_whitespace();
        let local = fields.nth(1)?;
        let state = fields.nth(1)?;
        if state != LISTEN {
            return None;
        }
        parse_proc_addr(local)
    })
}

/// Parses `0100007F:AFC8` (IPv4) or 32 hex digits and a port (IPv6). The kernel prints the
/// address as 32-bit words in the machine's byte order, the port as a plain number.
fn parse_proc_addr(field: &str) -> Option<SocketAddr> {
    let (ip, port) = field.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let word = |i: usize| -> Option<[u8; 4]> {
        let hex = ip.get(i * 8..i * 8 + 8)?;
        Some(u32::from_str_radix(hex, 16).ok()?.to_ne_bytes())
    };
    let ip = match ip.len() {
        8 => IpAddr::V4(Ipv4Addr::from(word(0)?)),
        32 => {
            let mut bytes = [0u8; 16];
            for i in 0..4 {
                bytes[i * 4..i * 4 + 4].copy_from_slice(&word(i)?);
            }
            IpAddr::V6(Ipv6Addr::from(bytes))
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

/// Whether sockets on `a` and `b` (same port) compete: the same address, or either a wildcard
/// (a dual-stack `[::]` covers IPv4 too).
fn overlap(a: IpAddr, b: IpAddr) -> bool {
    let canonical = |ip: IpAddr| match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    a.is_unspecified() || b.is_unspecified() || canonical(a) == canonical(b)
}

/// The kernel's ephemeral port range (`net.ipv4.ip_local_port_range`), inclusive.
pub fn ephemeral_range() -> Option<(u16, u16)> {
    let text = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok()?;
    let mut bounds = text.split_whitespace().map(str::parse::<u16>);
    Some((bounds.next()?.ok()?, bounds.next()?.ok()?))
}

/// The ports reserved from the ephemeral range, as the kernel lists them (`45000,50000-50010`).
fn reserved_ports() -> Option<String> {
    let text = std::fs::read_to_string(format!(
        "/proc/sys/{}",
        RESERVED_PORTS_SYSCTL.replace('.', "/")
    ))
    .ok()?;
    Some(text.trim().to_string())
}

/// Whether `port` is in a reserved-ports list such as `45000,50000-50010`.
fn is_reserved(list: &str, port: u16) -> bool {
    list.split(',').filter(|s| !s.is_empty()).any(|item| {
        let (low, high) = item.split_once('-').unwrap_or((item, item));
        matches!(
            (low.trim().parse::<u16>(), high.trim().parse::<u16>()),
            (Ok(low), Ok(high)) if (low..=high).contains(&port)
        )
    })
}

/// Whether outgoing connections can take `port` as their source port: it lies in the ephemeral
/// range and is not reserved. `None` where the kernel's settings cannot be read.
pub fn exposed(port: u16) -> Option<bool> {
    let (low, high) = ephemeral_range()?;
    let reserved = reserved_ports().unwrap_or_default();
    Some((low..=high).contains(&port) && !is_reserved(&reserved, port))
}

/// The command that reserves `ports`, keeping the reservations already in force: the sysctl is
/// one list, and setting it replaces the whole list.
pub(crate) fn reserve_command(ports: &[u16]) -> String {
    reserve_command_with(&reserved_ports().unwrap_or_default(), ports)
}

fn reserve_command_with(current: &str, ports: &[u16]) -> String {
    let mut list: Vec<String> = current
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    for port in ports {
        if !is_reserved(current, *port) {
            list.push(port.to_string());
        }
    }
    format!("sysctl -w {RESERVED_PORTS_SYSCTL}={}", list.join(","))
}

/// Why ports in the ephemeral range can be held by closed connections, and the fix, for a log
/// line or an error: `the port lies in …; fix: sysctl -w …`.
pub fn explain_exposed(ports: &[u16]) -> String {
    let range =
        ephemeral_range().map_or_else(String::new, |(low, high)| format!(" ({low}-{high})"));
    format!(
        "{} in the ephemeral port range{range} that the kernel gives outgoing connections, and a \
         closed connection holds its port for {TIME_WAIT_SECS} s (TIME_WAIT); fix: `{}` \
         (for every boot, a file in /etc/sysctl.d/ like the jamd package's {SYSCTL_FILE})",
        if ports.len() == 1 {
            "the port lies"
        } else {
            "the ports lie"
        },
        reserve_command(ports),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_tables_parse() {
        let v4 = "  sl  local_address rem_address   st tx_queue rx_queue\n   \
                  0: 0100007F:AFC8 00000000:0000 0A 00000000:00000000\n   \
                  1: 0100007F:BF6A 0100007F:AFC8 06 00000000:00000000\n";
        let listening: Vec<_> = listening_addrs(v4).collect();
        assert_eq!(
            listening,
            vec!["127.0.0.1:45000".parse::<SocketAddr>().expect("addr")]
        );
        let v6 = "  sl  local_address rem_address st\n   \
                  0: 00000000000000000000000000000000:AFC8 00000000000000000000000000000000:0000 0A\n";
        let listening: Vec<_> = listening_addrs(v6).collect();
        assert_eq!(
            listening,
            vec!["[::]:45000".parse::<SocketAddr>().expect("addr")]
        );
    }

    #[test]
    fn a_real_listener_is_seen() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        if listener_on(addr).is_none() {
            return; // no /proc here
        }
        assert_eq!(listener_on(addr), Some(true));
        assert_eq!(
            listener_on(SocketAddr::from((Ipv6Addr::UNSPECIFIED, addr.port()))),
            Some(true)
        );
        assert_eq!(
            listener_on(SocketAddr::from(([127, 0, 0, 2], addr.port()))),
            Some(false)
        );
        drop(listener);
        assert_eq!(listener_on(addr), Some(false));
    }

    #[test]
    fn reserved_lists() {
        assert!(is_reserved("45000", 45000));
        assert!(is_reserved("8080,44000-46000", 45000));
        assert!(!is_reserved("", 45000));
        assert!(!is_reserved("45001,1-10", 45000));
    }

    #[test]
    fn the_reserve_command_keeps_existing_reservations() {
        assert_eq!(
            reserve_command_with("", &[45000]),
            "sysctl -w net.ipv4.ip_local_reserved_ports=45000"
        );
        assert_eq!(
            reserve_command_with("8080,50000-50010", &[45000]),
            "sysctl -w net.ipv4.ip_local_reserved_ports=8080,50000-50010,45000"
        );
        assert_eq!(
            reserve_command_with("44000-46000", &[45000]),
            "sysctl -w net.ipv4.ip_local_reserved_ports=44000-46000"
        );
    }
}
