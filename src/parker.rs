//! Parking for idle sessions, so that an idle connection costs about a hundred bytes.
//!
//! A tokio task with a registered socket costs over a kilobyte (the task cell and the reactor's
//! per-socket state are each padded to cache lines). A session with nothing in progress — no
//! partial line, no unsent replies — needs none of that: after a short quiet period it gives its
//! socket to the parker, a thread that holds parked sockets as plain descriptors in a slab and
//! watches them with `mio` (epoll; registration costs no user-space memory). When a parked socket
//! becomes readable (a request, EOF or a reset), when its idle timeout expires, or when the server
//! shuts down, the parker hands it back to a new session task.

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::time::Duration;

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};
use slab::Slab;
use tokio::runtime::Handle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, error};

use crate::connection;
use crate::per_ip::PerIpGuard;
use crate::server::{ActiveGuard, Shared};

const WAKER: Token = Token(usize::MAX);

/// What a parked session keeps: its socket and what its logs and limits need.
pub(crate) struct Parked {
    pub(crate) stream: std::net::TcpStream,
    pub(crate) meta: Meta,
    pub(crate) requests: u64,
    pub(crate) last_request: Instant,
}

/// A session's identity, carried from task to parker and back.
pub(crate) struct Meta {
    pub(crate) id: u64,
    pub(crate) peer: SocketAddr,
    /// A load balancer's own connection (a PROXY header without a client address, as health
    /// checks send): logged at debug level, since it comes every few hundred milliseconds.
    pub(crate) from_balancer: bool,
    pub(crate) opened: Instant,
    /// Counts the session as active until it is dropped.
    pub(crate) _active: ActiveGuard,
    /// Holds the client address's slot under the per-address limit, if it counts.
    pub(crate) _per_ip: Option<PerIpGuard>,
}

/// Why a parked session was handed back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wake {
    /// Its socket became readable (data, EOF or an error): serve it.
    Readable,
    /// No complete request within the idle timeout: tell the client and close.
    IdleExpired,
    /// The server is shutting down: answer whatever is there and close.
    Shutdown,
}

enum Message {
    Park(Box<Parked>),
    Drain(tokio::sync::oneshot::Sender<()>),
}

/// The handle sessions use to park themselves.
pub(crate) struct Parker {
    tx: mpsc::Sender<Message>,
    waker: Waker,
}

impl Parker {
    /// Starts the parker thread. Sessions it hands back run on `runtime`, tracked by `tracker`.
    pub(crate) fn start(
        shared: Arc<Shared>,
        runtime: Handle,
        tracker: TaskTracker,
        shutdown: CancellationToken,
    ) -> io::Result<Parker> {
        let poll = Poll::new()?;
        let waker = Waker::new(poll.registry(), WAKER)?;
        let (tx, rx) = mpsc::channel();
        let thread = ParkerThread {
            poll,
            rx,
            parked: Slab::new(),
            shared,
            runtime,
            tracker,
            shutdown,
        };
        std::thread::Builder::new()
            .name("jamd-parker".into())
            .spawn(move || thread.run())?;
        Ok(Parker { tx, waker })
    }

    /// Parks a session. Gives it back if the parker has stopped (the server is shutting down).
    // The error hands the session back whole, at once; boxing it would allocate on every park.
    #[allow(clippy::result_large_err)]
    pub(crate) fn park(&self, parked: Parked) -> Result<(), Parked> {
        match self.tx.send(Message::Park(Box::new(parked))) {
            Ok(()) => {
                let _ = self.waker.wake();
                Ok(())
            }
            Err(mpsc::SendError(Message::Park(parked))) => Err(*parked),
            Err(_) => unreachable!("only Park was sent"),
        }
    }

    /// Hands every parked session back for shutdown and stops the parker; returns once the
    /// sessions have been spawned.
    pub(crate) async fn drain(&self) {
        let (ack, done) = tokio::sync::oneshot::channel();
        if self.tx.send(Message::Drain(ack)).is_ok() {
            let _ = self.waker.wake();
            let _ = done.await;
        }
    }
}

struct ParkerThread {
    poll: Poll,
    rx: mpsc::Receiver<Message>,
    parked: Slab<Parked>,
    shared: Arc<Shared>,
    runtime: Handle,
    tracker: TaskTracker,
    shutdown: CancellationToken,
}

impl ParkerThread {
    fn run(mut self) {
        let mut events = Events::with_capacity(1024);
        let idle = self.shared.config.idle_timeout;
        // Idle expiry is checked by scanning: accurate to a tenth of the timeout, at most 1 s.
        let scan_every = (!idle.is_zero())
            .then(|| (idle / 10).clamp(Duration::from_millis(5), Duration::from_secs(1)));
        let mut next_scan = scan_every.map(|every| Instant::now() + every);
        loop {
            let wait = next_scan.map(|at| at.saturating_duration_since(Instant::now()));
            if let Err(e) = self.poll.poll(&mut events, wait) {
                if e.kind() != io::ErrorKind::Interrupted {
                    error!(error = %e, "parker cannot poll; handing every parked session back");
                    self.hand_back_all(Wake::Readable);
                    return;
                }
            }
            for event in &events {
                if event.token() == WAKER {
                    if self.receive() {
                        return;
                    }
                } else if let Some(parked) = self.take(event.token().0) {
                    self.hand_back(parked, Wake::Readable);
                }
            }
            if let (Some(at), Some(every)) = (next_scan, scan_every) {
                let now = Instant::now();
                if now >= at {
                    self.expire(now, idle);
                    next_scan = Some(now + every);
                }
            }
        }
    }

    /// Handles queued messages; `true` when the parker should stop.
    fn receive(&mut self) -> bool {
        while let Ok(message) = self.rx.try_recv() {
            match message {
                Message::Park(parked) => self.insert(*parked),
                Message::Drain(ack) => {
                    self.hand_back_all(Wake::Shutdown);
                    let _ = ack.send(());
                    return true;
                }
            }
        }
        false
    }

    fn insert(&mut self, parked: Parked) {
        let fd = parked.stream.as_raw_fd();
        let entry = self.parked.vacant_entry();
        let token = Token(entry.key());
        match self
            .poll
            .registry()
            .register(&mut SourceFd(&fd), token, Interest::READABLE)
        {
            Ok(()) => {
                debug!(conn = parked.meta.id, "session parked");
                entry.insert(parked);
                self.shared.parked.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                debug!(conn = parked.meta.id, error = %e, "cannot park session; serving it");
                self.hand_back(parked, Wake::Readable);
            }
        }
    }

    fn take(&mut self, key: usize) -> Option<Parked> {
        let parked = self.parked.try_remove(key)?;
        self.shared.parked.fetch_sub(1, Ordering::Relaxed);
        let fd = parked.stream.as_raw_fd();
        let _ = self.poll.registry().deregister(&mut SourceFd(&fd));
        Some(parked)
    }

    fn expire(&mut self, now: Instant, idle: Duration) {
        let expired: Vec<usize> = self
            .parked
            .iter()
            .filter(|(_, p)| now >= p.last_request + idle)
            .map(|(key, _)| key)
            .collect();
        for key in expired {
            if let Some(parked) = self.take(key) {
                self.hand_back(parked, Wake::IdleExpired);
            }
        }
    }

    fn hand_back_all(&mut self, why: Wake) {
        let keys: Vec<usize> = self.parked.iter().map(|(key, _)| key).collect();
        for key in keys {
            if let Some(parked) = self.take(key) {
                self.hand_back(parked, why);
            }
        }
    }

    fn hand_back(&self, parked: Parked, why: Wake) {
        let shared = self.shared.clone();
        let shutdown = self.shutdown.clone();
        self.tracker.spawn_on(
            connection::resume(parked, why, shared, shutdown),
            &self.runtime,
        );
    }
}
