//! The PROXY protocol (versions 1 and 2, as HAProxy and cloud load balancers send it): a header
//! in front of the client's bytes that carries the real client address, so that logs and metrics
//! show the client instead of the load balancer.
//!
//! With `--proxy-protocol`, every connection must start with a header; a connection without a
//! valid one is closed, because without the header its bytes cannot be told apart from a header
//! forged by a client that reached the port directly. Parsing is done by the `ppp` crate; this
//! module decides how much to read, how long to wait, and what the header means for the session.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use ppp::{HeaderResult, PartialResult, v1, v2};

/// The v2 signature, the first 12 bytes of every v2 header.
const V2_SIGNATURE: &[u8] = b"\r\n\r\n\0\r\nQUIT\n";

/// The start of every v1 header.
const V1_PREFIX: &[u8] = b"PROXY ";

/// Longest header accepted. A v1 header is at most 107 bytes; a v2 header from HAProxy is 16
/// bytes plus its addresses (at most 216, for Unix sockets) plus optional TLVs.
pub const MAX_HEADER: usize = 536;

/// Why a connection's PROXY header was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProxyError {
    /// The connection does not start with a PROXY protocol signature.
    #[error("no PROXY protocol header (the connection does not start with one)")]
    Missing,
    /// The header is malformed.
    #[error("invalid PROXY protocol header: {0}")]
    Invalid(String),
    /// No complete header within [`MAX_HEADER`] bytes.
    #[error("PROXY protocol header longer than {MAX_HEADER} bytes")]
    TooLong,
    /// The header did not arrive in time.
    #[error("no complete PROXY protocol header within {0:?}")]
    Timeout(Duration),
    /// The client closed before sending a complete header.
    #[error("connection closed before a complete PROXY protocol header")]
    Closed,
    /// Reading failed.
    #[error("reading the PROXY protocol header failed: {0}")]
    Io(String),
}

/// What a complete header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Its length in bytes; the client's own bytes start after it.
    pub len: usize,
    /// The client's address, or `None` when the header carries none (v1 `UNKNOWN`, v2 `LOCAL`
    /// as in load-balancer health checks, or a non-IP address family): the connection's own
    /// peer address stands.
    pub client: Option<SocketAddr>,
}

/// Parses a header at the start of `bytes`: `Ok(None)` if more bytes are needed.
pub fn parse(bytes: &[u8]) -> Result<Option<Header>, ProxyError> {
    let starts_like = |signature: &[u8]| {
        let n = bytes.len().min(signature.len());
        bytes[..n] == signature[..n]
    };
    if !starts_like(V2_SIGNATURE) && !starts_like(V1_PREFIX) {
        return Err(ProxyError::Missing);
    }
    let result = HeaderResult::parse(bytes);
    if result.is_incomplete() {
        return if bytes.len() >= MAX_HEADER {
            Err(ProxyError::TooLong)
        } else {
            Ok(None)
        };
    }
    let header = match result {
        // ppp accepts a v1 header ending in a bare LF when nothing follows it, but not when data
        // does: the verdict would depend on how the bytes were split into packets. The
        // specification requires CR LF, so require it here.
        HeaderResult::V1(Ok(header)) if !header.header.ends_with("\r\n") => {
            return Err(ProxyError::Invalid("header must end in CR LF".into()));
        }
        HeaderResult::V1(Ok(header)) => Header {
            len: header.header.len(),
            client: match header.addresses {
                v1::Addresses::Tcp4(a) => {
                    Some(SocketAddr::new(IpAddr::V4(a.source_address), a.source_port))
                }
                v1::Addresses::Tcp6(a) => {
                    Some(SocketAddr::new(IpAddr::V6(a.source_address), a.source_port))
                }
                v1::Addresses::Unknown => None,
            },
        },
        HeaderResult::V2(Ok(header)) => Header {
            len: header.len(),
            client: match (header.command, header.addresses) {
                (v2::Command::Local, _) => None,
                (v2::Command::Proxy, v2::Addresses::IPv4(a)) => {
                    Some(SocketAddr::new(IpAddr::V4(a.source_address), a.source_port))
                }
                (v2::Command::Proxy, v2::Addresses::IPv6(a)) => {
                    Some(SocketAddr::new(IpAddr::V6(a.source_address), a.source_port))
                }
                (v2::Command::Proxy, _) => None,
            },
        },
        HeaderResult::V1(Err(e)) => return Err(ProxyError::Invalid(e.to_string())),
        HeaderResult::V2(Err(e)) => return Err(ProxyError::Invalid(e.to_string())),
    };
    if header.len > MAX_HEADER {
        return Err(ProxyError::TooLong);
    }
    Ok(Some(header))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v2(command: u8, family: u8, addresses: &[u8]) -> Vec<u8> {
        let mut h = V2_SIGNATURE.to_vec();
        h.push(0x20 | command);
        h.push(family);
        h.extend_from_slice(&(addresses.len() as u16).to_be_bytes());
        h.extend_from_slice(addresses);
        h
    }

    #[test]
    fn a_v1_tcp4_header_gives_the_client_address_and_its_length() {
        let input = b"PROXY TCP4 192.0.2.7 10.0.0.1 51000 45000\r\nTIME\r\n";
        let header = parse(input).expect("valid").expect("complete");
        assert_eq!(
            header.client,
            Some("192.0.2.7:51000".parse().expect("addr"))
        );
        assert_eq!(&input[header.len..], b"TIME\r\n");
    }

    #[test]
    fn a_v1_tcp6_header_gives_the_client_address() {
        let input = b"PROXY TCP6 2001:db8::7 2001:db8::1 51000 45000\r\n";
        let header = parse(input).expect("valid").expect("complete");
        assert_eq!(
            header.client,
            Some("[2001:db8::7]:51000".parse().expect("addr"))
        );
        assert_eq!(header.len, input.len());
    }

    #[test]
    fn v1_unknown_keeps_the_connections_own_address() {
        let header = parse(b"PROXY UNKNOWN\r\n")
            .expect("valid")
            .expect("complete");
        assert_eq!(header.client, None);
    }

    #[test]
    fn a_v2_proxy_header_gives_the_client_address() {
        let mut addresses = vec![192, 0, 2, 7, 10, 0, 0, 1];
        addresses.extend_from_slice(&51000u16.to_be_bytes());
        addresses.extend_from_slice(&45000u16.to_be_bytes());
        let mut input = v2(1, 0x11, &addresses);
        let len = input.len();
        input.extend_from_slice(b"TIME\r\n");
        let header = parse(&input).expect("valid").expect("complete");
        assert_eq!(header.len, len);
        assert_eq!(
            header.client,
            Some("192.0.2.7:51000".parse().expect("addr"))
        );
    }

    #[test]
    fn a_v2_local_header_as_in_health_checks_carries_no_address() {
        let header = parse(&v2(0, 0x00, &[])).expect("valid").expect("complete");
        assert_eq!(
            header,
            Header {
                len: 16,
                client: None
            }
        );
    }

    #[test]
    fn a_partial_header_asks_for_more_bytes() {
        assert_eq!(parse(b""), Ok(None));
        assert_eq!(parse(b"PROX"), Ok(None));
        assert_eq!(parse(b"PROXY TCP4 192.0.2.7 "), Ok(None));
        assert_eq!(parse(&V2_SIGNATURE[..5]), Ok(None));
        assert_eq!(parse(&v2(1, 0x11, &[0; 12])[..20]), Ok(None));
    }

    #[test]
    fn a_connection_without_a_header_is_refused_at_its_first_byte() {
        assert_eq!(parse(b"TIME\r\n"), Err(ProxyError::Missing));
        assert_eq!(parse(b"T"), Err(ProxyError::Missing));
        assert_eq!(parse(b"\r\n\r\nTIME"), Err(ProxyError::Missing));
    }

    #[test]
    fn a_malformed_header_is_invalid() {
        assert!(matches!(
            parse(b"PROXY TCP4 not-an-address 10.0.0.1 1 2\r\n"),
            Err(ProxyError::Invalid(_))
        ));
    }

    #[test]
    fn a_v1_header_must_end_in_cr_lf_however_the_bytes_arrive() {
        // Found by fuzzing: accepted alone, refused when the client's data followed.
        let bare_lf = b"PROXY TCP6 2:: 7::1 511 6 \n";
        assert!(matches!(parse(bare_lf), Err(ProxyError::Invalid(_))));
        let mut with_data = bare_lf.to_vec();
        with_data.extend_from_slice(b"TIME\r\n");
        assert!(matches!(parse(&with_data), Err(ProxyError::Invalid(_))));
    }

    #[test]
    fn a_header_that_never_ends_is_too_long() {
        let mut input = b"PROXY TCP4 ".to_vec();
        input.resize(MAX_HEADER, b'1');
        assert!(parse(&input).is_err());
    }
}
