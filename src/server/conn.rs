//! A connection's socket side: the thin adapter between the event loop's `mio` socket and the
//! pure [`Connection`], performing what it asks (write, read, shut down) and telling it what
//! came of each.

use std::io::{self, Read as _, Write as _};
use std::net::Shutdown;
use std::sync::Arc;

use mio::net::TcpStream;

use super::connection::{Action, Connection};
use super::deadlines::Tick;
use super::shared::Shared;
use crate::clock::ReplyClock;

/// Reads one connection may make per turn of its loop (16 × 16 KiB): past that it waits until
/// the loop's other ready connections have had theirs, so a client that floods cannot starve
/// them (memcached's per-event request budget).
pub(super) const READS_PER_TURN: usize = 16;

/// What the event loop lends a connection while it handles an event.
pub(super) struct Turn<'a> {
    pub(super) shared: &'a Arc<Shared>,
    /// The loop's read buffer.
    pub(super) input: &'a mut [u8],
    pub(super) now: Tick,
    /// The time of day for replies.
    pub(super) time: ReplyClock<'a>,
    /// The event said the client closed its side: a short read no longer means the socket is
    /// drained (the end of file raises no further event), so reads go on to the end.
    pub(super) read_closed: bool,
    /// Reads this connection may still make in this turn of the loop.
    pub(super) reads_left: usize,
}

/// One connection in its loop: the socket, the state machine, the armed deadline.
pub(super) struct Conn {
    pub(super) stream: TcpStream,
    pub(super) connection: Connection,
    /// The deadline in the loop's heap for this connection, if any.
    pub(super) armed: Option<Tick>,
}

/// What the loop should do with a connection after an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Next {
    /// Keep it; wait for its next event or deadline.
    Wait,
    /// It is finished: remove and drop it (closing the socket).
    Done,
    /// It used its reads for this turn with more waiting: handle it again after the others
    /// (no new edge-triggered event would come for what is already there).
    Yield,
}

impl Conn {
    /// A connection over `stream` (replies go out at once: no Nagle delay).
    pub(super) fn new(stream: TcpStream, connection: Connection) -> Conn {
        let _ = stream.set_nodelay(true);
        Conn {
            stream,
            connection,
            armed: None,
        }
    }

    /// Performs what the connection asks until it must wait or is done.
    pub(super) fn drive(&mut self, turn: &mut Turn<'_>) -> Next {
        let (shared, now) = (turn.shared, turn.now);
        let conn = &mut self.connection;
        loop {
            match conn.poll(shared, now, &turn.time) {
                Action::Wait => return Next::Wait,
                Action::Close => return Next::Done,
                Action::Write(bytes) => match (&self.stream).write(bytes) {
                    Ok(n) => conn.wrote(n, now),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => conn.write_blocked(),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => conn.failed(&e, shared, now),
                },
                Action::Read(max) => {
                    if turn.reads_left == 0 {
                        return Next::Yield;
                    }
                    turn.reads_left -= 1;
                    let len = max.min(turn.input.len());
                    let buf = &mut turn.input[..len];
                    match ReadDrained::read(&self.stream, buf) {
                        Ok(ReadDrained::Data { n, drained }) => conn.received(
                            &buf[..n],
                            drained && !turn.read_closed,
                            shared,
                            now,
                            &turn.time,
                        ),
                        Ok(ReadDrained::Empty) => conn.read_empty(now),
                        Ok(ReadDrained::Eof) => conn.eof(shared, now),
                        Err(e) => conn.failed(&e, shared, now),
                    }
                }
                Action::ShutdownWrite => {
                    let ok = self.stream.shutdown(Shutdown::Write).is_ok();
                    conn.shut(ok, shared, now);
                }
            }
        }
    }
}

/// One read from an edge-triggered socket, telling whether it drained the receive queue.
///
/// It relies on what epoll(7) documents for edge-triggered mode: an event is reported when new
/// data arrives. A read that returns fewer bytes than asked for emptied the queue at that
/// instant, so data arriving later raises a new event, and the loop may wait instead of paying
/// one more `read()` that would fail with EAGAIN (one system call per request at depth 1).
enum ReadDrained {
    /// `n` bytes; `drained` when the read was short.
    Data { n: usize, drained: bool },
    /// Nothing to read now (EAGAIN).
    Empty,
    /// The client closed its side.
    Eof,
}

impl ReadDrained {
    fn read(stream: &TcpStream, buf: &mut [u8]) -> io::Result<ReadDrained> {
        loop {
            return match (&*stream).read(buf) {
                Ok(0) => Ok(ReadDrained::Eof),
                Ok(n) => Ok(ReadDrained::Data {
                    n,
                    drained: n < buf.len(),
                }),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(ReadDrained::Empty),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => Err(e),
            };
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_connection_is_small() {
        // What an idle connection costs in its loop's slab (see docs/benchmarks.md, memory).
        let size = std::mem::size_of::<super::Conn>();
        println!("Conn: {size} bytes");
        assert!(size <= 448, "{size}");
    }
}
