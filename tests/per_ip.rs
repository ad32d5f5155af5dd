//! `--max-connections-per-ip` against the real binary, with clients on several loopback source
//! addresses (127.0.0.2, 127.0.0.3…) and PROXY-protocol clients whose addresses the header gives.

mod common;

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};

use common::{Jamd, WAIT, eventually};
use socket2::{Domain, Socket, Type};

/// A client connected to `server` from the loopback address `127.0.0.<host>`.
fn connect_from(host: u8, server: SocketAddr) -> TcpStream {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
    let source = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, host)), 0);
    socket
        .bind(&source.into())
        .expect("bind the source address");
    socket.connect(&server.into()).expect("connect");
    let stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(WAIT)).expect("timeout");
    stream
}

/// Sends TIME and reads one 14-byte reply.
fn ask(stream: &mut TcpStream) -> String {
    stream.write_all(b"TIME\r\n").expect("send");
    let mut reply = [0u8; 14];
    stream.read_exact(&mut reply).expect("a reply");
    String::from_utf8_lossy(&reply).into_owned()
}

/// Everything the server sends until it closes.
fn rest(stream: &mut TcpStream) -> String {
    let mut all = Vec::new();
    let _ = stream.read_to_end(&mut all);
    String::from_utf8_lossy(&all).into_owned()
}

/// `n` sessions from `127.0.0.<host>`, each proven served.
fn hold(host: u8, server: SocketAddr, n: usize) -> Vec<TcpStream> {
    (0..n)
        .map(|_| {
            let mut s = connect_from(host, server);
            assert!(ask(&mut s).starts_with("JAM "));
            s
        })
        .collect()
}

#[test]
fn one_address_gets_at_most_its_limit_while_another_address_is_still_served() {
    let jamd = Jamd::spawn(&["--max-connections-per-ip", "3"]);
    let _held = hold(2, jamd.addr, 3);
    let mut fourth = connect_from(2, jamd.addr);
    assert_eq!(
        rest(&mut fourth),
        "ERR too many connections from your address (max 3)\r\n"
    );
    let mut other = connect_from(3, jamd.addr);
    assert!(ask(&mut other).starts_with("JAM "));
}

#[test]
fn a_freed_slot_is_usable_again_at_once() {
    let jamd = Jamd::spawn(&["--max-connections-per-ip", "2"]);
    let mut held = hold(2, jamd.addr, 2);
    let mut first = held.remove(0);
    first.write_all(b"QUIT\r\n").expect("quit");
    assert_eq!(rest(&mut first), "");
    drop(first);
    // The server frees the slot when its side of the close is done, a moment after ours.
    eventually(
        || "a new connection from the same address is served".into(),
        || {
            let mut s = connect_from(2, jamd.addr);
            s.write_all(b"TIME\r\n").ok()?;
            let mut reply = [0u8; 14];
            s.read_exact(&mut reply).ok()?;
            reply.starts_with(b"JAM ").then_some(())
        },
    );
}

#[test]
fn the_default_is_a_quarter_of_the_connection_limit() {
    let jamd = Jamd::spawn(&["--max-connections", "100"]);
    jamd.wait_for_log("max_connections_per_ip=25");
    let _held = hold(2, jamd.addr, 25);
    let mut over = connect_from(2, jamd.addr);
    assert_eq!(
        rest(&mut over),
        "ERR too many connections from your address (max 25)\r\n"
    );
}

#[test]
fn zero_turns_the_per_address_limit_off() {
    let jamd = Jamd::spawn(&["--max-connections", "8", "--max-connections-per-ip", "0"]);
    let _held = hold(2, jamd.addr, 8);
    let mut over = connect_from(2, jamd.addr);
    assert_eq!(rest(&mut over), "ERR server busy\r\n");
}

#[test]
fn when_the_total_limit_is_reached_too_the_reply_is_server_busy() {
    let jamd = Jamd::spawn(&["--max-connections", "3", "--max-connections-per-ip", "3"]);
    let _held = hold(2, jamd.addr, 3);
    let mut over = connect_from(2, jamd.addr);
    assert_eq!(rest(&mut over), "ERR server busy\r\n");
}

#[test]
fn an_address_over_its_limit_is_warned_about_once_and_counted_in_the_metrics() {
    let jamd = Jamd::spawn(&["--max-connections-per-ip", "1", "--metrics", "127.0.0.1:0"]);
    let _held = hold(2, jamd.addr, 1);
    for _ in 0..3 {
        let mut over = connect_from(2, jamd.addr);
        assert!(rest(&mut over).starts_with("ERR too many connections"));
    }
    jamd.wait_for_log("its further connections are refused");
    let warnings = jamd
        .log()
        .iter()
        .filter(|l| l.contains("its further connections are refused"))
        .count();
    assert_eq!(warnings, 1, "{:?}", jamd.log());
    assert!(jamd.log().iter().any(|l| l.contains("address=127.0.0.2")));
    let line = jamd.wait_for_log("metrics listening on");
    let metrics: SocketAddr = line
        .split("metrics listening on ")
        .nth(1)
        .and_then(|rest| rest.split([' ', '"', ',']).next())
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no metrics address in {line:?}"));
    let mut http = TcpStream::connect(metrics).expect("metrics");
    http.set_read_timeout(Some(WAIT)).expect("timeout");
    http.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .expect("scrape");
    let body = rest(&mut http);
    assert!(
        body.contains("jamd_connections_refused_total{reason=\"per_ip\"} 3"),
        "{body}"
    );
    assert!(
        body.contains("jamd_error_replies_total{kind=\"per_ip\"} 3"),
        "{body}"
    );
}

#[test]
fn rfc868_shares_the_per_address_count_and_just_closes() {
    let jamd = Jamd::spawn(&["--max-connections-per-ip", "1", "--rfc868", "127.0.0.1:0"]);
    let line = jamd.wait_for_log("rfc868-time service listening on");
    let time: SocketAddr = line
        .split("listening on ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no address in {line:?}"));
    let mut free = connect_from(3, time);
    let mut four = Vec::new();
    free.read_to_end(&mut four).expect("read");
    assert_eq!(four.len(), 4, "an address under its limit gets the time");
    let _held = hold(2, jamd.addr, 1);
    let mut over = connect_from(2, time);
    let mut got = Vec::new();
    over.read_to_end(&mut got).expect("read");
    assert!(got.is_empty(), "closed without an answer: {got:?}");
}

/// A client behind a load balancer: a PROXY v1 header from `client`, then `TIME`.
fn via_balancer(server: SocketAddr, client: &str) -> String {
    let mut stream = TcpStream::connect(server).expect("connect");
    stream.set_read_timeout(Some(WAIT)).expect("timeout");
    let family = if client.contains(':') { "TCP6" } else { "TCP4" };
    let dest = if client.contains(':') {
        "::1"
    } else {
        "127.0.0.1"
    };
    let header = format!("PROXY {family} {client} {dest} 40000 45000\r\n");
    stream.write_all(header.as_bytes()).expect("header");
    stream.write_all(b"TIME\r\n").expect("send");
    let mut reply = vec![0u8; 14];
    let n = stream.read(&mut reply).expect("read");
    reply.truncate(n);
    if reply.starts_with(b"JAM ") {
        // Keep the session open for the rest of the test.
        std::mem::forget(stream);
    } else {
        reply.extend_from_slice(rest(&mut stream).as_bytes());
    }
    String::from_utf8_lossy(&reply).into_owned()
}

#[test]
fn behind_a_balancer_the_client_address_counts_and_ipv6_by_its_64_bit_prefix() {
    let jamd = Jamd::spawn(&["--proxy-protocol", "--max-connections-per-ip", "1"]);
    assert!(via_balancer(jamd.addr, "2001:db8::1").starts_with("JAM "));
    assert_eq!(
        via_balancer(jamd.addr, "2001:db8::2"),
        "ERR too many connections from your address (max 1)\r\n",
        "the same /64"
    );
    assert!(
        via_balancer(jamd.addr, "2001:db8:0:1::1").starts_with("JAM "),
        "another /64"
    );
    assert!(
        via_balancer(jamd.addr, "10.0.0.1").starts_with("JAM "),
        "the balancer's own address does not count"
    );
    assert!(via_balancer(jamd.addr, "10.0.0.2").starts_with("JAM "));
    assert_eq!(
        via_balancer(jamd.addr, "10.0.0.1"),
        "ERR too many connections from your address (max 1)\r\n"
    );
}
