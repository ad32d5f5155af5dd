//! Running under systemd: socket activation (listening sockets passed in `LISTEN_FDS`) and
//! `Type=notify` readiness (`READY=1`, `STOPPING=1`). Outside systemd both are no-ops.

use std::io;
use std::net::TcpListener;

use listenfd::ListenFd;
use sd_notify::NotifyState;
use socket2::SockRef;

/// Errors taking the sockets that systemd passed.
#[derive(Debug, thiserror::Error)]
pub enum ActivationError {
    /// A passed descriptor is not a TCP socket (a Unix or UDP socket in the `.socket` unit).
    #[error("socket {index} passed by systemd is not a TCP socket (jamd serves TCP only)")]
    NotTcp {
        /// Position among the passed sockets, from 0.
        index: usize,
        /// Why it was refused.
        #[source]
        source: io::Error,
    },
    /// A passed TCP socket is not listening (a `.socket` unit with `Accept=yes` passes connections).
    #[error("socket {index} passed by systemd is not listening; use Accept=no in the .socket unit")]
    NotListening {
        /// Position among the passed sockets, from 0.
        index: usize,
    },
    /// A passed socket could not be inspected or made non-blocking.
    #[error("cannot use socket {index} passed by systemd")]
    Setup {
        /// Position among the passed sockets, from 0.
        index: usize,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
}

/// Takes the listening TCP sockets passed by systemd socket activation, in the order of the
/// `.socket` unit, non-blocking (as tokio needs; systemd passes them blocking). `Ok(None)` when
/// the process was not socket-activated (no `LISTEN_FDS`, or `LISTEN_PID` names another process).
///
/// Call this before any thread starts: listenfd clears `LISTEN_FDS` and `LISTEN_PID` with
/// `std::env::remove_var`, which is only sound while the process has one thread.
pub fn take_listeners() -> Result<Option<Vec<TcpListener>>, ActivationError> {
    let mut fds = ListenFd::from_env();
    if fds.len() == 0 {
        return Ok(None);
    }
    let mut listeners = Vec::with_capacity(fds.len());
    for index in 0..fds.len() {
        let listener = fds
            .take_tcp_listener(index)
            .map_err(|source| ActivationError::NotTcp { index, source })?
            .ok_or_else(|| ActivationError::Setup {
                index,
                source: io::Error::other("already taken"),
            })?;
        let setup = |source| ActivationError::Setup { index, source };
        if !SockRef::from(&listener).is_listener().map_err(setup)? {
            return Err(ActivationError::NotListening { index });
        }
        listener.set_nonblocking(true).map_err(setup)?;
        listeners.push(listener);
    }
    Ok(Some(listeners))
}

/// Tells systemd (`Type=notify`) that jamd serves; `status` shows in `systemctl status`.
pub fn notify_ready(status: &str) {
    notify(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// Tells systemd that shutdown has begun, so it does not take the wait for sessions as a hang.
pub fn notify_stopping() {
    notify(&[
        NotifyState::Stopping,
        NotifyState::Status("shutting down: finishing sessions"),
    ]);
}

fn notify(states: &[NotifyState<'_>]) {
    // Serving matters more than telling systemd: a lost message is logged, never fatal (systemd
    // itself then reports the start-up timeout).
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!(error = %e, "cannot notify systemd (NOTIFY_SOCKET)");
    }
}
