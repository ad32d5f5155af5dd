//! Open connections per client address, so that one address (a runaway load-test script) cannot
//! take every slot: xinetd's `per_source`, nginx's `limit_conn` per address.
//!
//! An address is an IPv4 address or an IPv6 /64 (one host usually owns a whole /64); an
//! IPv4-mapped IPv6 address counts as its IPv4 address. The table holds only addresses with open
//! connections, so its size is bounded by the connection limit.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What the per-address limit counts by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AddressKey {
    /// One IPv4 address.
    V4(Ipv4Addr),
    /// The first 64 bits of an IPv6 address.
    V6Net(u64),
}

impl AddressKey {
    /// The key of a client address.
    pub fn of(ip: IpAddr) -> AddressKey {
        match ip.to_canonical() {
            IpAddr::V4(v4) => AddressKey::V4(v4),
            IpAddr::V6(v6) => AddressKey::V6Net((u128::from(v6) >> 64) as u64),
        }
    }
}

impl fmt::Display for AddressKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AddressKey::V4(v4) => write!(f, "{v4}"),
            AddressKey::V6Net(net) => write!(f, "{}/64", Ipv6Addr::from(u128::from(*net) << 64)),
        }
    }
}

/// How often one address may be warned about.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// Most addresses remembered for warning rate limits; past that, warnings wait for old entries to
/// expire, so a flood from many addresses cannot grow the table.
const MAX_WARNED: usize = 4096;

#[derive(Debug, Default)]
struct Table {
    open: HashMap<AddressKey, usize>,
    warned: HashMap<AddressKey, Instant>,
}

/// The open-connection counts by address, shared by every accept loop.
#[derive(Debug, Clone)]
pub struct PerIp {
    max: usize,
    table: Arc<Mutex<Table>>,
}

/// Why [`PerIp::admit`] turned a connection away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OverLimit {
    /// The address.
    pub key: AddressKey,
    /// Whether this refusal should be logged as a warning (at most once per 10 s per address).
    pub warn: bool,
}

impl PerIp {
    /// At most `max` open connections per address.
    pub fn new(max: usize) -> Self {
        PerIp {
            max,
            table: Arc::default(),
        }
    }

    /// The limit.
    pub fn max(&self) -> usize {
        self.max
    }

    /// Counts one more connection from `ip`, or refuses it when the address has `max` already.
    /// The slot is held until the returned guard is dropped.
    pub fn admit(&self, ip: IpAddr) -> Result<PerIpGuard, OverLimit> {
        self.admit_at(ip, Instant::now())
    }

    fn admit_at(&self, ip: IpAddr, now: Instant) -> Result<PerIpGuard, OverLimit> {
        let key = AddressKey::of(ip);
        let mut table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        let open = table.open.entry(key).or_insert(0);
        if *open < self.max {
            *open += 1;
            return Ok(PerIpGuard {
                key,
                table: self.table.clone(),
            });
        }
        let warn = match table.warned.get(&key) {
            Some(&at) if now.duration_since(at) < WARN_EVERY => false,
            _ => {
                if table.warned.len() >= MAX_WARNED {
                    table
                        .warned
                        .retain(|_, at| now.duration_since(*at) < WARN_EVERY);
                }
                let room = table.warned.len() < MAX_WARNED;
                if room {
                    table.warned.insert(key, now);
                }
                room
            }
        };
        Err(OverLimit { key, warn })
    }

    /// Addresses with open connections now.
    #[cfg(test)]
    fn addresses(&self) -> usize {
        self.table.lock().map(|t| t.open.len()).unwrap_or(0)
    }
}

/// One connection's slot in the per-address count; freed on drop.
#[derive(Debug)]
pub struct PerIpGuard {
    key: AddressKey,
    table: Arc<Mutex<Table>>,
}

impl Drop for PerIpGuard {
    fn drop(&mut self) {
        let mut table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(open) = table.open.get_mut(&self.key) {
            *open -= 1;
            if *open == 0 {
                table.open.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("an address")
    }

    #[test]
    fn ipv6_addresses_count_by_their_64_bit_prefix_and_mapped_ipv4_as_ipv4() {
        assert_eq!(
            AddressKey::of(ip("2001:db8::1")),
            AddressKey::of(ip("2001:db8::ffff:2"))
        );
        assert_ne!(
            AddressKey::of(ip("2001:db8::1")),
            AddressKey::of(ip("2001:db8:0:1::1"))
        );
        assert_eq!(
            AddressKey::of(ip("::ffff:10.0.0.7")),
            AddressKey::of(ip("10.0.0.7"))
        );
        assert_ne!(
            AddressKey::of(ip("10.0.0.7")),
            AddressKey::of(ip("10.0.0.8"))
        );
        assert_eq!(
            AddressKey::of(ip("2001:db8:1:2:3:4:5:6")).to_string(),
            "2001:db8:1:2::/64"
        );
        assert_eq!(AddressKey::of(ip("10.0.0.7")).to_string(), "10.0.0.7");
    }

    #[test]
    fn an_address_gets_max_slots_and_a_freed_slot_is_reusable_at_once() {
        let limit = PerIp::new(2);
        let a = limit.admit(ip("10.0.0.1")).expect("first");
        let _b = limit.admit(ip("10.0.0.1")).expect("second");
        let over = limit.admit(ip("10.0.0.1")).expect_err("third");
        assert_eq!(over.key, AddressKey::V4(Ipv4Addr::new(10, 0, 0, 1)));
        let _other = limit.admit(ip("10.0.0.2")).expect("another address");
        drop(a);
        let _again = limit.admit(ip("10.0.0.1")).expect("a freed slot");
    }

    #[test]
    fn the_table_holds_only_addresses_with_open_connections() {
        let limit = PerIp::new(4);
        let guards: Vec<_> = (1..=50)
            .map(|i| {
                limit
                    .admit(IpAddr::V4(Ipv4Addr::new(10, 0, 0, i)))
                    .expect("admit")
            })
            .collect();
        assert_eq!(limit.addresses(), 50);
        drop(guards);
        assert_eq!(limit.addresses(), 0);
    }

    #[test]
    fn an_address_over_its_limit_is_warned_about_at_most_once_per_ten_seconds() {
        let limit = PerIp::new(1);
        let t0 = Instant::now();
        let _held = limit.admit_at(ip("10.0.0.1"), t0).expect("first");
        let _held6 = limit.admit_at(ip("2001:db8::1"), t0).expect("first v6");
        assert!(limit.admit_at(ip("10.0.0.1"), t0).expect_err("over").warn);
        assert!(
            !limit
                .admit_at(ip("10.0.0.1"), t0 + Duration::from_secs(9))
                .expect_err("over")
                .warn
        );
        assert!(
            limit
                .admit_at(ip("2001:db8::2"), t0)
                .expect_err("over")
                .warn
        );
        assert!(
            limit
                .admit_at(ip("10.0.0.1"), t0 + Duration::from_secs(10))
                .expect_err("over")
                .warn
        );
    }
}
