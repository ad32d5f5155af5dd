//! A connection that a case drives by hand: every byte sent and received, every pause and the
//! close go into a transcript with their times, every wait has a deadline and every read a cap, so
//! no server can hang or flood the checker.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout_at};

/// Most bytes one connection reads in one case: enough for any honest answer, and a flooding
/// server costs nothing more.
pub const READ_CAP: usize = 4096;

/// How long after part of a line without a line end the probe takes it as a whole line.
const QUIET: Duration = Duration::from_millis(500);

/// What happened on the wire, in order, shared by the connections of one case.
#[derive(Debug, Clone)]
pub struct Transcript {
    start: Instant,
    events: Arc<Mutex<Vec<String>>>,
}

impl Transcript {
    /// An empty transcript whose times count from now.
    pub fn new() -> Self {
        Transcript {
            start: Instant::now(),
            events: Arc::default(),
        }
    }

    /// Adds one event, stamped with the time since the case began.
    pub fn note(&self, who: &str, what: impl AsRef<str>) {
        let ms = self.start.elapsed().as_secs_f64() * 1e3;
        let line = format!("{ms:8.1} ms  {who:<2} {}", what.as_ref());
        if let Ok(mut events) = self.events.lock() {
            events.push(line);
        }
    }

    /// The events so far, one line each.
    pub fn lines(&self) -> Vec<String> {
        self.events.lock().map(|e| e.clone()).unwrap_or_default()
    }

    /// Time since the case began.
    pub fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }
}

impl Default for Transcript {
    fn default() -> Self {
        Self::new()
    }
}

/// Why a connection could not be opened.
#[derive(Debug)]
pub enum ConnectError {
    /// Nothing listens there.
    Refused,
    /// No answer to the SYN within the deadline.
    Timeout,
    /// Another error.
    Other(std::io::Error),
}

/// What a wait for a line ended with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Got {
    /// A raw line, its line end included (none if the server went quiet or closed after it).
    Line(Vec<u8>),
    /// The server closed the connection (end of file) with no partial line.
    Closed,
    /// The connection was reset, or another read error.
    Reset(String),
    /// Nothing (more) came before the deadline.
    Timeout,
    /// The server sent more than [`READ_CAP`] bytes.
    Flood,
}

/// One connection of a case.
#[derive(Debug)]
pub struct Probe {
    stream: TcpStream,
    who: &'static str,
    transcript: Transcript,
    pending: Vec<u8>,
    read: usize,
    eof: bool,
}

impl Probe {
    /// Connects within `deadline`; `who` names the client in the transcript (`A`, `B`…).
    pub async fn connect(
        addr: SocketAddr,
        who: &'static str,
        transcript: &Transcript,
        deadline: Instant,
    ) -> Result<Probe, ConnectError> {
        match timeout_at(deadline, TcpStream::connect(addr)).await {
            Err(_) => {
                transcript.note(who, format!("connect to {addr}: no answer"));
                Err(ConnectError::Timeout)
            }
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                transcript.note(who, format!("connect to {addr}: refused"));
                Err(ConnectError::Refused)
            }
            Ok(Err(e)) => {
                transcript.note(who, format!("connect to {addr}: {e}"));
                Err(ConnectError::Other(e))
            }
            Ok(Ok(stream)) => {
                let _ = stream.set_nodelay(true);
                transcript.note(who, "connected");
                Ok(Probe {
                    stream,
                    who,
                    transcript: transcript.clone(),
                    pending: Vec::new(),
                    read: 0,
                    eof: false,
                })
            }
        }
    }

    /// Sends `bytes` in one write. A server that never reads cannot block this: the few bytes a
    /// case sends fit in the socket buffers, and the write has a deadline anyway.
    pub async fn send(&mut self, bytes: &[u8], deadline: Instant) -> Result<(), String> {
        self.transcript
            .note(self.who, format!("sent \"{}\"", show(bytes)));
        match timeout_at(deadline, self.stream.write_all(bytes)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => {
                self.transcript.note(self.who, format!("send failed: {e}"));
                Err(format!("sending failed: {e}"))
            }
            Err(_) => {
                self.transcript
                    .note(self.who, "send blocked: the server does not read");
                Err("the server does not read what it is sent".into())
            }
        }
    }

    /// Waits for the next line until `deadline`.
    pub async fn line(&mut self, deadline: Instant) -> Got {
        loop {
            if let Some(end) = memchr::memchr(b'\n', &self.pending) {
                let line: Vec<u8> = self.pending.drain(..=end).collect();
                self.transcript
                    .note(self.who, format!("got \"{}\"", show(&line)));
                return Got::Line(line);
            }
            let partial = !self.pending.is_empty();
            if self.eof {
                if partial {
                    let line = std::mem::take(&mut self.pending);
                    self.transcript
                        .note(self.who, format!("got \"{}\" (no line end)", show(&line)));
                    return Got::Line(line);
                }
                return Got::Closed;
            }
            let until = if partial {
                deadline.min(Instant::now() + QUIET)
            } else {
                deadline
            };
            match self.fill(until).await {
                Ok(true) => {}
                Ok(false) if partial => {
                    let line = std::mem::take(&mut self.pending);
                    self.transcript.note(
                        self.who,
                        format!("got \"{}\" (no line end, then silence)", show(&line)),
                    );
                    return Got::Line(line);
                }
                Ok(false) => return Got::Timeout,
                Err(got) => return got,
            }
        }
    }

    /// Reads more bytes until `until`: `Ok(true)` if some came or the server closed,
    /// `Ok(false)` on the deadline.
    async fn fill(&mut self, until: Instant) -> Result<bool, Got> {
        if self.read >= READ_CAP {
            self.transcript
                .note(self.who, format!("stopped reading after {READ_CAP} bytes"));
            return Err(Got::Flood);
        }
        let mut buf = [0u8; 1024];
        let room = buf.len().min(READ_CAP - self.read);
        match timeout_at(until, self.stream.read(&mut buf[..room])).await {
            Err(_) => Ok(false),
            Ok(Ok(0)) => {
                self.transcript
                    .note(self.who, "server closed the connection");
                self.eof = true;
                Ok(true)
            }
            Ok(Ok(n)) => {
                self.read += n;
                self.pending.extend_from_slice(&buf[..n]);
                Ok(true)
            }
            Ok(Err(e)) => {
                self.transcript.note(self.who, format!("read failed: {e}"));
                Err(Got::Reset(e.to_string()))
            }
        }
    }

    /// Collects lines until `want` have come, then waits `settle` more for extra lines; stops at
    /// `deadline`, a close or an error. Returns the lines and how the wait ended if not normally.
    pub async fn lines(
        &mut self,
        want: usize,
        settle: Duration,
        deadline: Instant,
    ) -> (Vec<Vec<u8>>, Option<Got>) {
        let mut lines = Vec::new();
        loop {
            let until = if lines.len() >= want {
                deadline.min(Instant::now() + settle)
            } else {
                deadline
            };
            match self.line(until).await {
                Got::Line(line) => lines.push(line),
                Got::Timeout if lines.len() >= want => return (lines, None),
                end => return (lines, Some(end)),
            }
        }
    }

    /// Waits for the server to close; returns what it sent before closing, and how it ended
    /// ([`Got::Closed`], [`Got::Reset`], [`Got::Timeout`] or [`Got::Flood`]).
    pub async fn until_closed(&mut self, deadline: Instant) -> (Vec<u8>, Got) {
        let mut before = std::mem::take(&mut self.pending);
        loop {
            if self.eof {
                before.append(&mut self.pending);
                return (before, Got::Closed);
            }
            match self.fill(deadline).await {
                Ok(true) => before.append(&mut self.pending),
                Ok(false) => return (before, Got::Timeout),
                Err(got) => return (before, got),
            }
        }
    }

    /// Notes a pause in the transcript and sleeps.
    pub async fn pause(&self, d: Duration) {
        self.transcript
            .note(self.who, format!("pause {} ms", d.as_millis()));
        tokio::time::sleep(d).await;
    }
}

/// A list of raw lines shown as escaped strings: `"JAM 01:02:03\r\n", "x\n"`.
pub fn show_lines(lines: &[Vec<u8>]) -> String {
    let mut out = String::new();
    for (i, line) in lines.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        let _ = write!(out, "\"{}\"", show(line));
    }
    out
}

/// Bytes as a string literal a student can read: `\r`, `\n`, `\t`, `\"`, `\\` and `\xNN` for
/// other control bytes and invalid UTF-8; cut after 120 characters with `...`.
pub fn show(bytes: &[u8]) -> String {
    const MAX: usize = 120;
    let mut out = String::new();
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\r' => out.push_str("\\r"),
                '\n' => out.push_str("\\n"),
                '\t' => out.push_str("\\t"),
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                c if c.is_ascii_control() => {
                    let _ = write!(out, "\\x{:02X}", c as u32);
                }
                c if c.is_control() => {
                    let _ = write!(out, "\\u{{{:X}}}", c as u32);
                }
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            let _ = write!(out, "\\x{b:02X}");
        }
        if out.chars().count() > MAX {
            break;
        }
    }
    if out.chars().count() > MAX {
        out = out.chars().take(MAX - 3).collect();
        out.push_str("...");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_are_shown_as_a_readable_literal() {
        assert_eq!(show(b"TIME\r\n"), "TIME\\r\\n");
        assert_eq!(show(b"a\"b\\\t"), "a\\\"b\\\\\\t");
        assert_eq!(show(b"\xc3\x28\x00\x1b"), "\\xC3(\\x00\\x1B");
        assert_eq!(show("Jäm".as_bytes()), "Jäm");
        let long = show(&[b'x'; 500]);
        assert_eq!(long.chars().count(), 120);
        assert!(long.ends_with("..."));
    }
}
