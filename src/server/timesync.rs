//! The kernel's clock-synchronisation state (`adjtimex`), what it means for the replies, and a
//! watcher that logs when it changes.
//!
//! A time server is only as good as its clock. Linux keeps, for the NTP daemon that disciplines
//! it, a flag saying whether the clock is synchronised and two error bounds: the estimated error
//! and the maximum error, which the kernel grows by 500 ppm (half a millisecond per second) until
//! a daemon refreshes it. With no daemon running, the flag says unsynchronised and the maximum
//! error sits at its 16 s cap. `jamd` only reads this state (an unprivileged, read-only call); it
//! never steers the clock.

use std::io;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// Above this maximum error a synchronised clock is still reported as inaccurate: replies have
/// one-second resolution, and `jam offset` promises well under a second.
const MAX_ERROR_TOLERATED: Duration = Duration::from_millis(500);

/// One reading of the kernel's clock-synchronisation state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncState {
    /// The kernel marks the clock unsynchronised (`STA_UNSYNC`, or the `TIME_ERROR` state).
    pub unsynchronised: bool,
    /// The kernel's bound on the clock's error.
    pub max_error: Duration,
    /// The kernel's estimate of the clock's error.
    pub est_error: Duration,
}

/// What a [`SyncState`] means for the replies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// Synchronised, with a maximum error within [`MAX_ERROR_TOLERATED`].
    Synchronised,
    /// Synchronised by the kernel's flag, but the maximum error is above the tolerance.
    Inaccurate,
    /// Not synchronised: nothing is disciplining the clock (or it lost its sources).
    Unsynchronised,
    /// The state could not be read.
    Unknown,
}

impl SyncState {
    /// Reads the state from the kernel with a read-only `adjtimex` call.
    pub fn read() -> io::Result<SyncState> {
        let (state, status, max_error_us, est_error_us) = adjtimex_read_only()?;
        Ok(SyncState {
            unsynchronised: state == libc::TIME_ERROR || status & libc::STA_UNSYNC != 0,
            max_error: micros(max_error_us),
            est_error: micros(est_error_us),
        })
    }

    /// Judges the state against [`MAX_ERROR_TOLERATED`].
    pub fn health(&self) -> Health {
        if self.unsynchronised {
            Health::Unsynchronised
        } else if self.max_error > MAX_ERROR_TOLERATED {
            Health::Inaccurate
        } else {
            Health::Synchronised
        }
    }
}

fn micros(us: libc::c_long) -> Duration {
    Duration::from_micros(u64::try_from(us).unwrap_or(0))
}

/// `adjtimex` with `modes == 0`, which only reads: returns the clock state and the status,
/// maximum-error and estimated-error fields.
///
/// This is the crate's one `unsafe` block: no maintained crate wraps this read (nix and rustix do
/// not; clock-steering exposes only the steering calls), and the call is as small as FFI gets.
#[allow(unsafe_code)]
fn adjtimex_read_only() -> io::Result<(libc::c_int, libc::c_int, libc::c_long, libc::c_long)> {
    // SAFETY: `timex` is a plain C struct of integers, for which all-zero bytes are a valid value
    // and, with `modes == 0`, the documented read-only request. The pointer is to a live, owned,
    // properly aligned struct that the kernel fills in before the call returns; nothing keeps it.
    let (state, timex) = unsafe {
        let mut timex: libc::timex = std::mem::zeroed();
        let state = libc::adjtimex(&mut timex);
        (state, timex)
    };
    if state < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((state, timex.status, timex.maxerror, timex.esterror))
}

/// Follows the clock state and turns its changes into log lines, so a clock that loses its
/// synchronisation is noticed without repeating the same warning every interval.
#[derive(Debug, Default)]
pub struct ClockWatch {
    last: Option<Health>,
}

/// A log line the watcher wants written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Report {
    /// Whether it is a warning (otherwise informational).
    pub warning: bool,
    /// The message.
    pub message: String,
}

impl ClockWatch {
    /// A watcher that has seen nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes one reading; returns a report on the first reading and whenever the health changes.
    fn observe(&mut self, reading: &io::Result<SyncState>) -> Option<Report> {
        let health = match reading {
            Ok(state) => state.health(),
            Err(_) => Health::Unknown,
        };
        let first = self.last.is_none();
        if self.last.replace(health) == Some(health) {
            return None;
        }
        Some(describe(reading, health, first))
    }

    /// Checks the kernel clock now and every `interval` until `shutdown`, logging changes; each
    /// reading is also handed to `record` (for metrics).
    pub async fn run(
        mut self,
        interval: Duration,
        shutdown: CancellationToken,
        record: impl Fn(&io::Result<SyncState>) + Send,
    ) {
        let mut ticks = tokio::time::interval(interval.max(Duration::from_millis(1)));
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = ticks.tick() => {}
            }
            let reading = SyncState::read();
            record(&reading);
            if let Some(report) = self.observe(&reading) {
                if report.warning {
                    warn!("{}", report.message);
                } else {
                    info!("{}", report.message);
                }
            }
        }
    }
}

fn describe(reading: &io::Result<SyncState>, health: Health, first: bool) -> Report {
    let errors = |s: &SyncState| {
        format!(
            "estimated error {}, maximum error {}",
            show(s.est_error),
            show(s.max_error)
        )
    };
    let (warning, message) = match (reading, health) {
        (Ok(s), Health::Synchronised) if first => (
            false,
            format!("system clock is synchronised ({})", errors(s)),
        ),
        (Ok(s), Health::Synchronised) => (
            false,
            format!("system clock is synchronised again ({})", errors(s)),
        ),
        (Ok(s), Health::Inaccurate) => (
            true,
            format!(
                "system clock is synchronised but its maximum error is {} (over {}): TIME replies may be off by a second or more",
                show(s.max_error),
                show(MAX_ERROR_TOLERATED)
            ),
        ),
        (Ok(s), _) => (
            true,
            format!(
                "system clock is not synchronised (is an NTP daemon such as chrony or systemd-timesyncd running?): TIME replies are only as right as this clock (kernel maximum error {})",
                show(s.max_error)
            ),
        ),
        (Err(e), _) => (
            true,
            format!("cannot read the clock synchronisation state (adjtimex): {e}"),
        ),
    };
    Report { warning, message }
}

/// `1.5 ms`, `16 s`: error bounds at a readable precision.
fn show(d: Duration) -> String {
    if d >= Duration::from_secs(1) {
        format!("{:.1} s", d.as_secs_f64())
    } else if d >= Duration::from_millis(1) {
        format!("{:.1} ms", d.as_secs_f64() * 1e3)
    } else {
        format!("{} µs", d.as_micros())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(unsynchronised: bool, max_ms: u64) -> io::Result<SyncState> {
        Ok(SyncState {
            unsynchronised,
            max_error: Duration::from_millis(max_ms),
            est_error: Duration::from_micros(300),
        })
    }

    #[test]
    fn the_unsynchronised_flag_wins_over_small_error_bounds() {
        assert_eq!(
            state(true, 1).expect("state").health(),
            Health::Unsynchronised
        );
    }

    #[test]
    fn a_synchronised_clock_with_a_large_error_bound_is_inaccurate() {
        assert_eq!(
            state(false, 501).expect("state").health(),
            Health::Inaccurate
        );
        assert_eq!(
            state(false, 500).expect("state").health(),
            Health::Synchronised
        );
    }

    #[test]
    fn the_first_reading_is_always_reported() {
        let mut watch = ClockWatch::new();
        let report = watch.observe(&state(false, 10)).expect("a report");
        assert!(!report.warning);
        assert_eq!(
            report.message,
            "system clock is synchronised (estimated error 300 µs, maximum error 10.0 ms)"
        );
    }

    #[test]
    fn an_unsynchronised_clock_is_a_warning_that_names_the_likely_cause() {
        let mut watch = ClockWatch::new();
        let report = watch.observe(&state(true, 16_000)).expect("a report");
        assert!(report.warning);
        assert!(report.message.contains("not synchronised"), "{report:?}");
        assert!(report.message.contains("NTP daemon"), "{report:?}");
        assert!(report.message.contains("16.0 s"), "{report:?}");
    }

    #[test]
    fn only_changes_are_reported_after_the_first_reading() {
        let mut watch = ClockWatch::new();
        assert!(watch.observe(&state(true, 16_000)).is_some());
        assert_eq!(watch.observe(&state(true, 16_000)), None);
        assert_eq!(watch.observe(&state(true, 15_000)), None);
        let recovered = watch.observe(&state(false, 20)).expect("recovery reported");
        assert!(!recovered.warning);
        assert!(recovered.message.contains("synchronised again"));
        assert_eq!(watch.observe(&state(false, 30)), None);
        let drifted = watch.observe(&state(false, 900)).expect("drift reported");
        assert!(drifted.warning);
        assert!(drifted.message.contains("900.0 ms"), "{drifted:?}");
    }

    #[test]
    fn an_unreadable_state_is_a_warning() {
        let mut watch = ClockWatch::new();
        watch.observe(&state(false, 10));
        let failed = watch
            .observe(&Err(io::Error::from(io::ErrorKind::PermissionDenied)))
            .expect("failure reported");
        assert!(failed.warning);
        assert!(failed.message.contains("adjtimex"));
    }

    #[test]
    fn the_kernel_state_can_be_read_here() {
        let state = SyncState::read().expect("adjtimex is allowed read-only");
        // The kernel caps the maximum error at 16 s (NTP_PHASE_LIMIT); anything above is a
        // misread field.
        assert!(state.max_error <= Duration::from_secs(16), "{state:?}");
        assert!(state.est_error <= Duration::from_secs(16), "{state:?}");
    }
}
