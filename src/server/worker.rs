//! One event loop: a `mio` poll over this loop's copies of the listeners and its connections,
//! which live in a slab from accept to close, with their deadlines in a heap.
//!
//! Each loop accepts for itself (every loop holds a copy of every listener, so a connection goes
//! to whichever loop's `accept` takes it first) and never hands a connection to another. Sockets
//! are registered once, edge-triggered, for both directions: no registration changes per request.

use std::cell::Cell;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io;
use std::net::SocketAddr;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token, Waker};
use slab::Slab;
use tracing::{debug, warn};

use super::admission::{self, Admission};
use super::conn::{Conn, Next, READS_PER_TURN, Turn};
use super::connection::Connection;
use super::deadlines::Tick;
use super::shared::{Backoff, RateLimit, Shared, WARN_INTERVAL, canonical, classify};
use crate::clock::{ReplyClock, TimeOfDay};
use crate::metrics::{AcceptError, Count};
use crate::service::Service;

/// Bytes taken from a socket per read.
const READ_CHUNK: usize = 16 * 1024;

/// Stale heap entries tolerated beyond two per connection before they are swept out.
const STALE_TIMERS: usize = 1024;

/// The waker's token; listeners count down from just below it, connections up from 0.
const WAKER: Token = Token(usize::MAX);

fn listener_token(i: usize) -> Token {
    Token(usize::MAX - 1 - i)
}

/// An event loop, built on the caller's thread and run on its own.
pub(super) struct Worker {
    poll: Poll,
    waker: Arc<Waker>,
    listeners: Vec<(TcpListener, Service)>,
    conns: Slab<Conn>,
    /// Deadlines: (when, slab key, connection id). An entry is stale unless the connection at
    /// that key has that id and that armed deadline.
    timers: BinaryHeap<Reverse<(Tick, usize, u64)>>,
    shared: Arc<Shared>,
    input: Vec<u8>,
    /// The reply buffer lent to the connection being handled.
    output: Vec<u8>,
    /// The time of day for this loop's replies, kept until its second ends (see [`ReplyClock`]).
    time_of_day: Cell<Option<(TimeOfDay, Instant)>>,
    backoff: Backoff,
    accept_warning: RateLimit,
    /// Accepting resumes at this instant after running out of descriptors or memory.
    accept_paused: Option<Tick>,
    /// When the grace period ends, once shutdown has begun.
    grace_end: Option<Tick>,
    /// Connections that used their reads for a turn with more waiting: driven again next turn.
    again: Vec<(usize, u64)>,
    /// Told once this loop's listeners are closed.
    listeners_closed: tokio::sync::mpsc::UnboundedSender<()>,
}

impl Worker {
    /// A loop over copies of `listeners`.
    pub(super) fn new(
        index: usize,
        listeners: &[(std::net::TcpListener, Service)],
        shared: Arc<Shared>,
        listeners_closed: tokio::sync::mpsc::UnboundedSender<()>,
    ) -> io::Result<Worker> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let mut own = Vec::new();
        for (i, (listener, service)) in listeners.iter().enumerate() {
            let copy = listener.try_clone()?;
            copy.set_nonblocking(true)?;
            let mut copy = TcpListener::from_std(copy);
            poll.registry()
                .register(&mut copy, listener_token(i), Interest::READABLE)?;
            own.push((copy, *service));
        }
        // Room for this loop's share of the connection limit, reserved up front: untouched pages
        // cost no memory, and the slab never moves (a grown Vec would keep its old copy in the
        // allocator after a burst).
        let threads = match shared.config.threads {
            0 => std::thread::available_parallelism().map_or(1, std::num::NonZero::get),
            n => n,
        };
        let share = shared.config.max_connections.div_ceil(threads.max(1)) + 64;
        let _ = index;
        Ok(Worker {
            poll,
            waker,
            listeners: own,
            conns: Slab::with_capacity(share),
            timers: BinaryHeap::with_capacity(share),
            shared,
            input: vec![0; READ_CHUNK],
            output: Vec::with_capacity(READ_CHUNK),
            time_of_day: Cell::new(None),
            backoff: Backoff::default(),
            accept_warning: RateLimit::new(WARN_INTERVAL),
            accept_paused: None,
            grace_end: None,
            again: Vec::new(),
            listeners_closed,
        })
    }

    /// Wakes the loop (to see that shutdown began).
    pub(super) fn waker(&self) -> Arc<Waker> {
        self.waker.clone()
    }

    /// Runs until shutdown has begun and every connection is closed. Returns whether the grace
    /// period ran out with connections still open.
    pub(super) fn run(mut self) -> bool {
        let mut events = Events::with_capacity(1024);
        // One clock reading per turn, taken when the wait ends: everything in the turn happens
        // at that instant, and the next wait is sized from it (a few microseconds long at most,
        // which the rounding up covers).
        let mut now = self.shared.epoch.now_tick();
        loop {
            let timeout = if self.again.is_empty() {
                self.next_wake().map(|at| {
                    // Round up, so the loop does not wake a little early and spin.
                    (at - now) + Duration::from_micros(500)
                })
            } else {
                // Connections wait for another turn: only look for new events.
                Some(Duration::ZERO)
            };
            if let Err(e) = self.poll.poll(&mut events, timeout)
                && e.kind() != io::ErrorKind::Interrupted
            {
                warn!(error = %e, "the event loop cannot wait for events; closing its connections");
                self.conns.clear();
                return false;
            }
            now = self.shared.epoch.now_tick();
            for event in events.iter() {
                match event.token() {
                    WAKER => {}
                    token if token.0 >= usize::MAX - 1 - self.listeners.len() => {
                        let i = usize::MAX - 1 - token.0;
                        if self.accept_paused.is_none() {
                            self.accept(i, now);
                        }
                    }
                    token => self.on_event(token.0, event, now),
                }
            }
            for (key, id) in std::mem::take(&mut self.again) {
                // Read on to the end of what is there: no further event may come for it.
                if self.conns.get(key).is_some_and(|c| c.connection.id() == id) {
                    self.handle(key, now, true, |_, _| {});
                }
            }
            if self.accept_paused.is_some_and(|at| now >= at) {
                self.accept_paused = None;
                for i in 0..self.listeners.len() {
                    self.accept(i, now);
                }
            }
            if self.grace_end.is_none() && self.shared.stopping() {
                self.begin_drain(now);
            }
            self.expire(now);
            if let Some(end) = self.grace_end {
                if self.conns.is_empty() {
                    return false;
                }
                if now >= end {
                    self.abandon_all(now);
                    return true;
                }
            }
        }
    }

    fn next_wake(&self) -> Option<Tick> {
        [
            self.timers.peek().map(|Reverse((at, _, _))| *at),
            self.accept_paused,
            self.grace_end,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Accepts every connection waiting on listener `i`.
    fn accept(&mut self, i: usize, now: Tick) {
        loop {
            // Checked before every accept: a client that connects after shutdown began is never
            // taken in (the listener closes, and the kernel resets what waits in its backlog).
            if self.shared.stopping() {
                if self.grace_end.is_none() {
                    self.begin_drain(now);
                }
                return;
            }
            let (listener, service) = match self.listeners.get(i) {
                Some((l, s)) => (l, *s),
                None => return,
            };
            match listener.accept() {
                Ok((stream, peer)) => {
                    self.backoff.reset();
                    self.admit(stream, canonical(peer), service, now);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    let kind = classify(&e);
                    self.shared.metrics.add(Count::AcceptError(kind), 1);
                    if kind == AcceptError::Connection {
                        debug!(error = %e, "accept failed for one connection; continuing");
                        continue;
                    }
                    let pause = self.backoff.next();
                    if let Some(suppressed) = self.accept_warning.allow(now) {
                        warn!(
                            error = %e,
                            pause_ms = pause.as_millis() as u64,
                            suppressed,
                            "cannot accept connections (out of descriptors or memory?); pausing accepts"
                        );
                    }
                    self.accept_paused = Some(now + pause);
                    return;
                }
            }
        }
    }

    /// Gives an accepted connection its place, or turns it away.
    fn admit(
        &mut self,
        stream: mio::net::TcpStream,
        peer: SocketAddr,
        service: Service,
        now: Tick,
    ) {
        let connection = match admission::at_accept(&self.shared, peer, service, now) {
            Admission::Admitted { slot, per_ip } => {
                Connection::accepted(&self.shared, peer, service, slot, per_ip, now)
            }
            Admission::Refused(Some(line)) => {
                Connection::refused(&self.shared, peer, Some(line), now)
            }
            // Closed without a word (an RFC 868/867 client would read a line as the time).
            Admission::Refused(None) => return,
        };
        let entry = self.conns.vacant_entry();
        let key = entry.key();
        let mut conn = Conn::new(stream, connection);
        if let Err(e) = self.poll.registry().register(
            &mut conn.stream,
            Token(key),
            Interest::READABLE | Interest::WRITABLE,
        ) {
            debug!(%peer, error = %e, "cannot watch a connection; closing it");
            // Counted as accepted: its close is counted (and logged) too.
            conn.connection.failed(&e, &self.shared, now);
            return;
        }
        entry.insert(conn);
        // No drive yet: registering raises the first event for whatever the socket holds.
        self.arm(key);
    }

    fn on_event(&mut self, key: usize, event: &mio::event::Event, now: Tick) {
        let read_closed = event.is_read_closed() || event.is_error();
        let writable = event.is_writable() || event.is_error();
        self.handle(key, now, read_closed, |connection, _| {
            // Readable, or closed (the end of file is read), or an error (a read reports it).
            if event.is_readable() || read_closed {
                connection.readable();
            }
            if writable {
                connection.writable();
            }
        });
    }

    /// Tells connection `key` of an event with `f`, then performs what it asks on its socket;
    /// then removes the connection if it is done, or re-arms its deadline.
    fn handle(
        &mut self,
        key: usize,
        now: Tick,
        read_closed: bool,
        f: impl FnOnce(&mut Connection, &Arc<Shared>),
    ) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let mut turn = Turn {
            shared: &self.shared,
            input: &mut self.input,
            now,
            time: ReplyClock::new(&self.shared.clock, &self.time_of_day),
            read_closed,
            reads_left: READS_PER_TURN,
        };
        // A bug in one connection's handling must not end the loop and every connection on it:
        // that connection is dropped, the loop goes on (each connection's state is its own, and
        // the loop's read buffer holds nothing between uses).
        let output = &mut self.output;
        let handled = panic::catch_unwind(AssertUnwindSafe(|| {
            let connection = &mut conn.connection;
            connection.lend_output(output);
            f(connection, turn.shared);
            let next = conn.drive(&mut turn);
            conn.connection.return_output(output);
            next
        }));
        let next = match handled {
            Ok(next) => next,
            Err(_) => {
                conn.connection.crashed(&self.shared);
                Next::Done
            }
        };
        match next {
            Next::Done => {
                let mut conn = self.conns.remove(key);
                let _ = self.poll.registry().deregister(&mut conn.stream);
                return;
            }
            Next::Yield => self.again.push((key, conn.connection.id())),
            Next::Wait => {}
        }
        self.arm(key);
    }

    /// Pushes connection `key`'s next deadline if it is earlier than the one armed; a later one
    /// is found when the armed one fires.
    #[inline(always)]
    fn arm(&mut self, key: usize) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if let Some(due) = conn.connection.deadline(&self.shared)
            && conn.armed.is_none_or(|armed| due < armed)
        {
            conn.armed = Some(due);
            self.timers.push(Reverse((due, key, conn.connection.id())));
            if self.timers.len() > 2 * self.conns.len() + STALE_TIMERS {
                self.drop_stale_timers();
            }
        }
    }

    /// Keeps only each connection's armed entry: the others would fire for nothing, and a
    /// session that keeps moving its deadline (the count rule every second) would pile them up.
    /// Its later deadlines are found again when the armed one fires.
    #[cold]
    fn drop_stale_timers(&mut self) {
        let conns = &self.conns;
        self.timers.retain(|&Reverse((at, key, id))| {
            conns
                .get(key)
                .is_some_and(|c| c.connection.id() == id && c.armed == Some(at))
        });
    }

    /// Handles every deadline that has passed (those re-armed meanwhile wait for the next turn).
    fn expire(&mut self, now: Tick) {
        let mut due = Vec::new();
        while let Some(&Reverse((at, key, id))) = self.timers.peek() {
            if at > now {
                break;
            }
            self.timers.pop();
            due.push((at, key, id));
        }
        for (at, key, id) in due {
            let current = self
                .conns
                .get(key)
                .is_some_and(|c| c.connection.id() == id && c.armed == Some(at));
            if current {
                if let Some(conn) = self.conns.get_mut(key) {
                    conn.armed = None;
                }
                self.handle(key, now, false, |connection, shared| {
                    connection.timer(shared, now)
                });
            }
        }
    }

    /// Shutdown began: close the listeners and let every connection answer what it has.
    fn begin_drain(&mut self, now: Tick) {
        self.grace_end = Some(now + self.shared.config.shutdown_grace);
        for (mut listener, _) in self.listeners.drain(..) {
            let _ = self.poll.registry().deregister(&mut listener);
        }
        let _ = self.listeners_closed.send(());
        let keys: Vec<usize> = self.conns.iter().map(|(key, _)| key).collect();
        for key in keys {
            // Read on to the end of what is there: no further event will come for it.
            self.handle(key, now, true, |connection, shared| {
                connection.drain(shared)
            });
        }
    }

    /// The grace period is over: every connection still open is closed as it is.
    fn abandon_all(&mut self, now: Tick) {
        for (_, conn) in self.conns.iter_mut() {
            conn.connection.abandon(&self.shared, now);
        }
        self.conns.clear();
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read as _, Write as _};
    use std::net::TcpStream;

    use super::*;
    use crate::clock::LocalClock;
    use crate::config::ServerConfig;
    use crate::metrics::Count;
    use crate::responder::CloseReason;

    /// Polls `done` every 10 ms for up to 5 s.
    fn eventually(what: &str, mut done: impl FnMut() -> bool) {
        for _ in 0..500 {
            if done() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("{what} did not happen within 5 s");
    }

    /// A loop over one jam listener on an ephemeral loopback port, and that port's address.
    fn a_loop() -> (Worker, std::net::SocketAddr) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let shared = Arc::new(Shared::new(ServerConfig::default(), LocalClock::system()));
        // The receiver is dropped: these tests never shut the loop down.
        let (closed_tx, _) = tokio::sync::mpsc::unbounded_channel();
        let worker = Worker::new(0, &[(listener, Service::Jam)], shared, closed_tx).expect("loop");
        (worker, addr)
    }

    #[test]
    fn a_panic_while_handling_one_connection_closes_it_and_the_loop_serves_the_others() {
        let (mut worker, addr) = a_loop();
        let mut hit = TcpStream::connect(addr).expect("connect");
        let mut other = TcpStream::connect(addr).expect("connect");
        eventually("both accepted", || {
            worker.accept(0, worker.shared.epoch.now_tick());
            worker.conns.len() == 2
        });
        // Accepted in the order they connected: the first has the smaller id.
        let key_of = |worker: &Worker, first: bool| {
            let ids = worker
                .conns
                .iter()
                .map(|(key, conn)| (conn.connection.id(), key));
            if first { ids.min() } else { ids.max() }.map(|(_, key)| key)
        };
        let (hit_key, other_key) = (key_of(&worker, true), key_of(&worker, false));

        let now = worker.shared.epoch.now_tick();
        worker.handle(hit_key.expect("hit"), now, false, |_, _| {
            panic!("a bug in one connection's handling")
        });

        assert_eq!(
            worker.conns.len(),
            1,
            "the connection that panicked is gone"
        );
        hit.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let mut byte = [0u8; 1];
        assert!(
            matches!(hit.read(&mut byte), Ok(0) | Err(_)),
            "its client sees the connection closed"
        );
        assert_eq!(
            worker
                .shared
                .metrics
                .total(Count::Closed(CloseReason::Internal)),
            1
        );

        other.write_all(b"TIME\r\n").expect("send");
        other.set_nonblocking(true).expect("nonblocking");
        let mut reply = Vec::new();
        let other_key = other_key.expect("other");
        eventually("the other connection answered", || {
            let now = worker.shared.epoch.now_tick();
            worker.handle(other_key, now, false, |connection, _| {
                connection.readable();
                connection.writable();
            });
            let mut buf = [0u8; 64];
            if let Ok(n) = other.read(&mut buf) {
                reply.extend_from_slice(&buf[..n]);
            }
            reply.ends_with(b"\r\n")
        });
        assert!(reply.starts_with(b"JAM "), "{reply:?}");
    }

    #[test]
    fn stale_timer_entries_are_swept_out_and_the_armed_one_stays() {
        let (mut worker, addr) = a_loop();
        let _client = TcpStream::connect(addr).expect("connect");
        eventually("accepted", || {
            worker.accept(0, worker.shared.epoch.now_tick());
            worker.conns.len() == 1
        });
        let (key, conn) = worker.conns.iter().next().expect("one");
        let (id, armed) = (conn.connection.id(), conn.armed.expect("armed"));
        for n in 1..=(STALE_TIMERS as u64 + 8) {
            worker
                .timers
                .push(Reverse((armed + Duration::from_secs(n), key, id)));
        }
        if let Some(conn) = worker.conns.get_mut(key) {
            conn.armed = None;
        }
        worker.arm(key);
        let armed = worker
            .conns
            .get(key)
            .and_then(|c| c.armed)
            .expect("armed again");
        let left: Vec<_> = worker.timers.iter().map(|Reverse(entry)| *entry).collect();
        // (Twice: the entry armed before and the one pushed again for the same instant.)
        assert_eq!(
            left,
            vec![(armed, key, id); 2],
            "only the armed entry is left"
        );
    }
}
