//! A connection that a case drives by hand. A reader task takes every byte, close and error off
//! the socket as it happens and stamps it in the transcript then, not when the case next looks:
//! a close 0.7 ms after "TI" shows at 0.7 ms, even while the case pauses. Every wait has a deadline
//! and every connection a read cap, so no server can hang or flood the checker.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::{Instant, timeout_at};

use super::display::{human, show};
use super::model::CaseId;
use crate::reply::line_len;

/// Most bytes one connection reads in one case: enough for any honest answer, and a flooding
/// server costs nothing more.
pub const READ_CAP: usize = 4096;

/// What happened on the wire, in order, shared by the connections of one case.
#[derive(Debug, Clone)]
pub struct Transcript {
    start: Instant,
    events: Arc<Mutex<Vec<String>>>,
    case: CaseId,
}

impl Transcript {
    /// An empty transcript whose times count from now.
    pub fn new() -> Self {
        Transcript::for_case(CaseId::Connect)
    }

    /// An empty transcript of case `case`, whose times count from now.
    pub fn for_case(case: CaseId) -> Self {
        Transcript {
            start: Instant::now(),
            events: Arc::default(),
            case,
        }
    }

    /// The case this transcript belongs to.
    pub fn case(&self) -> CaseId {
        self.case
    }

    /// Adds one event, stamped with the time since the case began.
    pub fn note(&self, who: &str, what: impl AsRef<str>) {
        self.note_at(Instant::now(), who, what);
    }

    fn note_at(&self, at: Instant, who: &str, what: impl AsRef<str>) {
        let ms = at.saturating_duration_since(self.start).as_secs_f64() * 1e3;
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
    /// Nothing listens there (refused, or reset by a listener that is closing).
    Refused,
    /// No answer to the SYN within the deadline.
    Timeout,
    /// Another error.
    Other(std::io::Error),
}

/// What a wait for a line ended with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Got {
    /// A raw line, its line end included (none if the server closed after it, or the deadline
    /// came with part of a line held).
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

/// What the reader task saw.
enum Arrival {
    Bytes(Vec<u8>, Instant),
    End(Got),
}

/// One connection of a case.
#[derive(Debug)]
pub struct Probe {
    writer: OwnedWriteHalf,
    arrivals: mpsc::UnboundedReceiver<ArrivalBox>,
    reader: JoinHandle<()>,
    who: &'static str,
    transcript: Transcript,
    pending: Vec<u8>,
    end: Option<Got>,
    closed_at: Arc<OnceLock<Instant>>,
    arrivals_at: Arc<Mutex<Vec<Instant>>>,
    last_data_at: Option<Instant>,
}

/// [`Arrival`] behind a `Debug` impl, for [`Probe`]'s.
struct ArrivalBox(Arrival);

impl std::fmt::Debug for ArrivalBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Arrival")
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        self.reader.abort();
    }
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
            // A listener closing as the SYN arrives (a server that is exiting) resets instead of
            // refusing: nothing accepts there either.
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                transcript.note(who, format!("connect to {addr}: reset"));
                Err(ConnectError::Refused)
            }
            Ok(Err(e)) => {
                transcript.note(who, format!("connect to {addr}: {e}"));
                Err(ConnectError::Other(e))
            }
            Ok(Ok(stream)) => {
                let _ = stream.set_nodelay(true);
                if !who.is_empty() {
                    transcript.note(who, "connected");
                }
                let (read, writer) = stream.into_split();
                let (tx, arrivals) = mpsc::unbounded_channel();
                let closed_at = Arc::new(OnceLock::new());
                let arrivals_at = Arc::new(Mutex::new(Vec::new()));
                let reader = tokio::spawn(read_all(
                    read,
                    tx,
                    who,
                    transcript.clone(),
                    closed_at.clone(),
                    arrivals_at.clone(),
                ));
                Ok(Probe {
                    writer,
                    arrivals,
                    reader,
                    who,
                    transcript: transcript.clone(),
                    pending: Vec::new(),
                    end: None,
                    closed_at,
                    arrivals_at,
                    last_data_at: None,
                })
            }
        }
    }

    /// Sends `bytes` in one write. A server that never reads cannot block this: the few bytes a
    /// case sends fit in the socket buffers, and the write has a deadline anyway.
    pub async fn send(&mut self, bytes: &[u8], deadline: Instant) -> Result<(), String> {
        self.transcript
            .note(self.who, format!("sent \"{}\"", show(bytes)));
        match timeout_at(deadline, self.writer.write_all(bytes)).await {
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

    /// Waits for the next line until `deadline`. Part of a line still held at the deadline or at
    /// the close is returned as a line without a line end.
    pub async fn line(&mut self, deadline: Instant) -> Got {
        loop {
            if let Some(n) = line_len(&self.pending) {
                return Got::Line(self.pending.drain(..n).collect());
            }
            if let Some(end) = &self.end {
                if self.pending.is_empty() {
                    return end.clone();
                }
                return Got::Line(std::mem::take(&mut self.pending));
            }
            if !self.receive(deadline).await {
                if self.pending.is_empty() {
                    return Got::Timeout;
                }
                self.transcript.note(
                    self.who,
                    format!(
                        "(\"{}\" has no line end after {})",
                        show(&self.pending),
                        human(self.transcript.elapsed())
                    ),
                );
                return Got::Line(std::mem::take(&mut self.pending));
            }
        }
    }

    /// Takes the next arrival into `pending` or `end`; false on the deadline.
    async fn receive(&mut self, deadline: Instant) -> bool {
        match timeout_at(deadline, self.arrivals.recv()).await {
            Err(_) => false,
            Ok(Some(ArrivalBox(Arrival::Bytes(bytes, at)))) => {
                self.pending.extend_from_slice(&bytes);
                self.last_data_at = Some(at);
                true
            }
            Ok(Some(ArrivalBox(Arrival::End(got)))) => {
                self.end = Some(got);
                true
            }
            // The reader task ended without saying why: it was aborted, which only drop does.
            Ok(None) => {
                self.end = Some(Got::Closed);
                true
            }
        }
    }

    /// Waits until `until` and returns every byte that came meanwhile (nothing is taken as a
    /// line): what a server says before it is asked anything.
    pub async fn collect_until(&mut self, until: Instant) -> Vec<u8> {
        while self.end.is_none() && self.receive(until).await {}
        std::mem::take(&mut self.pending)
    }

    /// Collects lines, giving each of the first `want` its own `wait` (a slow server's every reply
    /// gets the full reply timeout), then waits `settle` more for extra lines; stops at a close or
    /// an error. Returns the lines and how the wait ended if not normally.
    pub async fn lines(
        &mut self,
        want: usize,
        settle: Duration,
        wait: Duration,
    ) -> (Vec<Vec<u8>>, Option<Got>) {
        let mut lines = Vec::new();
        loop {
            let until = Instant::now() + if lines.len() >= want { settle } else { wait };
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
        loop {
            if let Some(end) = &self.end {
                return (std::mem::take(&mut self.pending), end.clone());
            }
            if !self.receive(deadline).await {
                return (std::mem::take(&mut self.pending), Got::Timeout);
            }
        }
    }

    /// When the server closed or reset this connection, if it has.
    pub fn closed_at(&self) -> Option<Instant> {
        self.closed_at.get().copied()
    }

    /// Whether bytes arrived on this connection between `from` and `to` (taken yet or not).
    pub fn data_between(&self, from: Instant, to: Instant) -> bool {
        self.arrivals_at
            .lock()
            .is_ok_and(|at| at.iter().any(|&t| from <= t && t <= to))
    }

    /// When the last bytes taken from this connection arrived.
    pub fn last_data_at(&self) -> Option<Instant> {
        self.last_data_at
    }

    /// Notes a pause in the transcript and sleeps; what arrives meanwhile is stamped as it comes.
    pub async fn pause(&self, d: Duration) {
        self.transcript
            .note(self.who, format!("pause {} ms", d.as_millis()));
        tokio::time::sleep(d).await;
    }
}

/// The reader task: every arrival stamped when it happens, at most [`READ_CAP`] bytes.
async fn read_all(
    mut read: OwnedReadHalf,
    tx: mpsc::UnboundedSender<ArrivalBox>,
    who: &'static str,
    transcript: Transcript,
    closed_at: Arc<OnceLock<Instant>>,
    arrivals_at: Arc<Mutex<Vec<Instant>>>,
) {
    let mut total = 0;
    let mut buf = [0u8; 1024];
    loop {
        if total >= READ_CAP {
            transcript.note(who, format!("stopped reading after {READ_CAP} bytes"));
            let _ = tx.send(ArrivalBox(Arrival::End(Got::Flood)));
            return;
        }
        let room = buf.len().min(READ_CAP - total);
        let result = read.read(&mut buf[..room]).await;
        let at = Instant::now();
        let end = match result {
            Ok(0) => {
                if !who.is_empty() {
                    transcript.note_at(at, who, "server closed the connection");
                }
                Got::Closed
            }
            Ok(n) => {
                total += n;
                if let Ok(mut arrivals) = arrivals_at.lock() {
                    arrivals.push(at);
                }
                if !who.is_empty() {
                    transcript.note_at(at, who, format!("got \"{}\"", show(&buf[..n])));
                }
                if tx
                    .send(ArrivalBox(Arrival::Bytes(buf[..n].to_vec(), at)))
                    .is_err()
                {
                    return;
                }
                continue;
            }
            Err(e) => {
                if !who.is_empty() {
                    transcript.note_at(at, who, format!("read failed: {e}"));
                }
                Got::Reset(e.to_string())
            }
        };
        let _ = closed_at.set(at);
        let _ = tx.send(ArrivalBox(Arrival::End(end)));
        return;
    }
}
