//! `HOST[:PORT]` as people write it, parsed once for both binaries: where `jam` dials and where
//! `jamd` listens. Each common mistake gets its own hint: an IPv6 address and port without
//! brackets, port 0 (to dial) or out of range, a URL scheme, a link-local address without its
//! interface. No I/O: names are resolved by the caller.

use std::fmt;
use std::net::Ipv6Addr;

/// What the address is for: the two differ in what a port may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Use {
    /// A server to connect to: the port may be left out (the caller's default), and 0 is an error.
    Dial,
    /// An address to listen on: the port is required, 0 asks for any free port, and `:PORT` means
    /// every interface.
    Listen,
}

/// A host and port, as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPort {
    /// Host name or IP address without brackets; empty for `:PORT` (every interface).
    pub host: String,
    /// The port, if the text gave one.
    pub port: Option<u16>,
}

/// Why an address cannot be used, and how to write it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressError {
    /// The text given.
    pub text: String,
    /// What is wrong, or how to write it.
    pub hint: String,
}

impl fmt::Display for AddressError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid address {:?}: {}", self.text, self.hint)
    }
}

impl std::error::Error for AddressError {}

/// Parses `text` for `purpose`.
pub fn parse(text: &str, purpose: Use) -> Result<HostPort, AddressError> {
    let text = text.trim();
    let fail = |hint: String| AddressError {
        text: text.to_string(),
        hint,
    };
    let usual = || {
        fail(
            match purpose {
                Use::Dial => "expected HOST[:PORT], e.g. 127.0.0.1:45000, [::1]:45000, time.lab",
                Use::Listen => "expected HOST:PORT, e.g. 127.0.0.1:45000, [::1]:45000 or :45000",
            }
            .to_string(),
        )
    };
    if text.is_empty() {
        return Err(usual());
    }
    if let Some((scheme, rest)) = text.split_once("://") {
        let give = match purpose {
            Use::Dial => "jam speaks its own protocol over TCP, so give HOST[:PORT]",
            Use::Listen => "give HOST:PORT",
        };
        return Err(fail(format!(
            "drop the \"{scheme}://\": {give} ({})",
            rest.trim_end_matches('/')
        )));
    }
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or_else(usual)?;
        match after {
            "" => (host, None),
            _ => (host, Some(after.strip_prefix(':').ok_or_else(usual)?)),
        }
    } else if text.matches(':').count() > 1 {
        if text.parse::<Ipv6Addr>().is_err()
            && let Some((ip, port)) = text.rsplit_once(':')
            && ip.parse::<Ipv6Addr>().is_ok()
            && port.parse::<u32>().is_ok()
        {
            return Err(fail(format!(
                "put an IPv6 address in brackets when a port follows: [{ip}]:{port}"
            )));
        }
        (text, None)
    } else if let Some((host, port)) = text.split_once(':') {
        (host, Some(port))
    } else {
        (text, None)
    };
    let port = match port {
        None if purpose == Use::Listen => return Err(usual()),
        None => None,
        Some(p) => match p.parse::<u32>() {
            Ok(0) if purpose == Use::Dial => {
                return Err(fail(
                    "port 0 cannot be dialled; a port is 1 to 65535".to_string(),
                ));
            }
            Ok(n) => Some(
                u16::try_from(n)
                    .map_err(|_| fail(format!("port {n} is out of range; a port is 1 to 65535")))?,
            ),
            Err(_) => return Err(usual()),
        },
    };
    if host.is_empty() && purpose == Use::Dial {
        return Err(usual());
    }
    if let Ok(ip) = host.parse::<Ipv6Addr>()
        && ip.segments()[0] & 0xffc0 == 0xfe80
    {
        let port = port.map_or(String::new(), |p| format!(":{p}"));
        return Err(fail(format!(
            "{ip} is link-local: name the interface it is on, e.g. [{ip}%eth0]{port}"
        )));
    }
    Ok(HostPort {
        host: host.to_string(),
        port,
    })
}

/// Whether `text` names a port (`host:1`, `[::1]:1`), as opposed to a host alone (`host`, `::1`,
/// `[::1]`).
pub(crate) fn names_port(text: &str) -> bool {
    let text = text.trim();
    match text.strip_prefix('[') {
        Some(rest) => rest.contains("]:"),
        None => text.matches(':').count() == 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(text: &str, purpose: Use) -> (String, Option<u16>) {
        let hp = parse(text, purpose).unwrap_or_else(|e| panic!("{text}: {e}"));
        (hp.host, hp.port)
    }

    #[test]
    fn the_usual_forms_parse_for_dialling() {
        assert_eq!(ok("127.0.0.1", Use::Dial), ("127.0.0.1".into(), None));
        assert_eq!(
            ok("127.0.0.1:4000", Use::Dial),
            ("127.0.0.1".into(), Some(4000))
        );
        assert_eq!(ok(" time.lab ", Use::Dial), ("time.lab".into(), None));
        assert_eq!(ok("[::1]:4000", Use::Dial), ("::1".into(), Some(4000)));
        assert_eq!(ok("[::1]", Use::Dial), ("::1".into(), None));
        assert_eq!(ok("::1", Use::Dial), ("::1".into(), None));
        assert_eq!(ok("2001:db8::1", Use::Dial), ("2001:db8::1".into(), None));
        assert_eq!(ok("h:65535", Use::Dial), ("h".into(), Some(65535)));
    }

    #[test]
    fn listening_needs_a_port_takes_0_and_an_empty_host_for_every_interface() {
        assert_eq!(ok(":45000", Use::Listen), (String::new(), Some(45000)));
        assert_eq!(
            ok("127.0.0.1:0", Use::Listen),
            ("127.0.0.1".into(), Some(0))
        );
        assert_eq!(ok("[::]:1", Use::Listen), ("::".into(), Some(1)));
        for text in ["127.0.0.1", "[::1]", "localhost"] {
            let e = parse(text, Use::Listen).expect_err(text);
            assert!(e.hint.contains("expected HOST:PORT"), "{text}: {e}");
        }
    }

    #[test]
    fn each_common_mistake_gets_its_hint() {
        for (text, purpose, hint) in [
            (
                "::1:48002",
                Use::Dial,
                "put an IPv6 address in brackets when a port follows: [::1]:48002",
            ),
            ("::1:48002", Use::Listen, "[::1]:48002"),
            ("fe80::1:45000", Use::Dial, "[fe80::1]:45000"),
            ("127.0.0.1:0", Use::Dial, "port 0 cannot be dialled"),
            ("[::1]:0", Use::Dial, "port 0 cannot be dialled"),
            (
                "h:70000",
                Use::Dial,
                "port 70000 is out of range; a port is 1 to 65535",
            ),
            (":70000", Use::Listen, "port 70000 is out of range"),
            (
                "http://lab:45000/",
                Use::Dial,
                "drop the \"http://\": jam speaks its own protocol over TCP, so give HOST[:PORT] (lab:45000)",
            ),
            (
                "tcp://0.0.0.0:45000",
                Use::Listen,
                "drop the \"tcp://\": give HOST:PORT (0.0.0.0:45000)",
            ),
            (
                "fe80::1",
                Use::Dial,
                "fe80::1 is link-local: name the interface it is on, e.g. [fe80::1%eth0]",
            ),
            ("[fe80::1]:45000", Use::Listen, "[fe80::1%eth0]:45000"),
            ("host:port", Use::Dial, "expected HOST[:PORT]"),
            ("", Use::Dial, "expected HOST[:PORT]"),
            (":4000", Use::Dial, "expected HOST[:PORT]"),
            ("[::1", Use::Dial, "expected HOST[:PORT]"),
            ("[::1]x", Use::Dial, "expected HOST[:PORT]"),
            ("[::1]:x", Use::Listen, "expected HOST:PORT"),
        ] {
            let e = parse(text, purpose).expect_err(text);
            assert_eq!(e.text, text.trim(), "{text}");
            assert!(e.hint.contains(hint), "{text} ({purpose:?}): {e}");
            assert!(
                e.to_string()
                    .starts_with(&format!("invalid address {:?}: ", text.trim()))
            );
        }
    }

    #[test]
    fn a_port_is_named_only_after_the_host() {
        for (text, named) in [
            ("h:1", true),
            ("[::1]:1", true),
            ("h", false),
            ("::1", false),
            ("[::1]", false),
            (" h:1 ", true),
        ] {
            assert_eq!(names_port(text), named, "{text}");
        }
    }
}
