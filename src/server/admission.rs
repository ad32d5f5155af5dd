//! Who may have a session, decided in one place: the connection limit (`--max-connections`:
//! busy), then the per-address limit (`--max-connections-per-ip`), at accept — or, behind a load
//! balancer (`--proxy-protocol`), once the PROXY header has named the client. Both moments count,
//! log and word a refusal the same way.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use tracing::{debug, warn};

use super::deadlines::Tick;
use super::shared::Shared;
use crate::metrics::{Count, Refusal};
use crate::per_ip::{OverLimit, PerIpGuard};
use crate::protocol::ErrorReply;
use crate::service::Service;

/// A connection's place under the connection limit, given back when dropped.
pub(super) struct ActiveSlot(Arc<Shared>);

impl ActiveSlot {
    /// Takes a slot under the connection limit, or `None` when the server is full.
    fn take(shared: &Arc<Shared>) -> Option<ActiveSlot> {
        let max = shared.config.max_connections;
        if shared.active.fetch_add(1, Ordering::AcqRel) >= max {
            shared.active.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(ActiveSlot(shared.clone()))
    }
}

impl Drop for ActiveSlot {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::AcqRel);
    }
}

/// What admission decided for a new connection.
pub(super) enum Admission {
    /// Served: its place under the connection limit and, when the address is known, under its
    /// address's limit (behind a load balancer that waits for the PROXY header).
    Admitted {
        slot: ActiveSlot,
        per_ip: Option<PerIpGuard>,
    },
    /// Refused with this error line before closing (`None`: closed without a word, for the
    /// one-shot RFC 868/867 services, whose clients would read the line as an answer).
    Refused(Option<ErrorReply<'static>>),
}

/// At accept: the connection limit, then the per-address limit (unless the real address comes
/// later, in a PROXY header). Counts and logs what it refuses; counts what it accepts.
pub(super) fn at_accept(
    shared: &Arc<Shared>,
    peer: SocketAddr,
    service: Service,
    now: Tick,
) -> Admission {
    let Some(slot) = ActiveSlot::take(shared) else {
        shared.metrics.add(Count::Refused(Refusal::Busy), 1);
        debug!(%peer, service = service.label(), reason = Refusal::Busy.label(), "server busy; turning connection away");
        if let Ok(mut limit) = shared.busy_warning.lock()
            && let Some(suppressed) = limit.allow(now)
        {
            warn!(
                max_connections = shared.config.max_connections,
                rejected_total = shared.stats().rejected,
                suppressed,
                "connection limit reached; new connections get ERR server busy"
            );
        }
        return Admission::Refused(spoken(service, ErrorReply::ServerBusy));
    };
    if shared.config.proxy_protocol {
        shared.metrics.add(Count::Accepted(service), 1);
        return Admission::Admitted { slot, per_ip: None };
    }
    match by_address(shared, peer, service) {
        Ok(per_ip) => {
            shared.metrics.add(Count::Accepted(service), 1);
            Admission::Admitted { slot, per_ip }
        }
        Err(line) => Admission::Refused(line),
    }
}

/// Behind a load balancer, once the PROXY header named `client`: the per-address limit for it.
/// The connection was counted as accepted already, so a refusal here is also counted as closed
/// for its address (the counts still add up).
pub(super) fn after_header(
    shared: &Shared,
    client: SocketAddr,
    service: Service,
) -> Result<Option<PerIpGuard>, Option<ErrorReply<'static>>> {
    by_address(shared, client, service).inspect_err(|_| {
        shared
            .metrics
            .add(Count::Closed(crate::responder::CloseReason::PerIp), 1);
    })
}

/// The per-address limit: a place for `peer`'s address, or the refusal (counted and logged).
fn by_address(
    shared: &Shared,
    peer: SocketAddr,
    service: Service,
) -> Result<Option<PerIpGuard>, Option<ErrorReply<'static>>> {
    let Some(per_ip) = &shared.per_ip else {
        return Ok(None);
    };
    match per_ip.admit(peer.ip()) {
        Ok(guard) => Ok(Some(guard)),
        Err(OverLimit { key, warn }) => {
            let max = per_ip.max();
            shared.metrics.add(Count::Refused(Refusal::PerIp), 1);
            debug!(%peer, service = service.label(), reason = Refusal::PerIp.label(), "too many connections from this address; turning connection away");
            if warn {
                warn!(
                    address = %key,
                    max_connections_per_ip = max,
                    "one address holds as many connections as it may; its further connections are refused (at most one warning per 10 s per address)"
                );
            }
            Err(spoken(service, ErrorReply::TooManyFromAddress { max }))
        }
    }
}

/// The refusal line a service's client may be sent: a jam client reads an `ERR` line; an RFC
/// 868/867 client would take it for the time, so it gets none.
fn spoken(service: Service, line: ErrorReply<'static>) -> Option<ErrorReply<'static>> {
    (service == Service::Jam).then_some(line)
}
