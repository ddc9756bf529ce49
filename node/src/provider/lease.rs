//! From award to running containers: the sealed manifest is opened and checked against the
//! order, the runtime starts the replicas, and the provider signs what happened as
//! [`LeaseEvent`]s: `ManifestAccepted`, then `Running { endpoints }` or `Failed { reason }`.
//!
//! Every award has a deadline. If the manifest has not arrived and the lease is not running by
//! then, the lease is `Failed` and the tenant pays nothing ([`PendingLeases`] tracks this, pure).

use std::collections::BTreeMap;
use std::time::Duration;

use leasemesh_protocol::seal::{self, SealedManifest};
use leasemesh_protocol::{CloseReason, Id, Keypair, LeaseEvent, LeaseEventKind, Order, Signed};
use x25519_dalek::StaticSecret;

use super::inventory::Allocation;
use super::runtime::{lease_spec, DockerRuntime, RuntimeError};
use super::ProviderMetrics;

/// Longest failure reason carried in an event (the protocol allows 1024 characters).
const MAX_REASON_CHARS: usize = 1000;

/// Awards waiting for their manifest and start, each with a deadline (ms). Pure.
#[derive(Debug, Default, Clone)]
pub struct PendingLeases {
    /// lease id → (deadline, order id)
    pending: BTreeMap<Id, (u64, Id)>,
}

impl PendingLeases {
    /// Starts the clock for an awarded lease.
    pub fn add(&mut self, lease_id: Id, order_id: Id, deadline_ms: u64) {
        self.pending.insert(lease_id, (deadline_ms, order_id));
    }

    /// The lease reached Running (or failed on its own): stop watching it. True if it was
    /// pending.
    pub fn settle(&mut self, lease_id: &Id) -> bool {
        self.pending.remove(lease_id).is_some()
    }

    pub fn deadline(&self, lease_id: &Id) -> Option<u64> {
        self.pending.get(lease_id).map(|(d, _)| *d)
    }

    /// Leases whose deadline has passed, removed and returned as (lease id, order id), sorted.
    /// Each gets a `Failed` event; nothing is charged for it.
    pub fn overdue(&mut self, now_ms: u64) -> Vec<(Id, Id)> {
        let late: Vec<(Id, Id)> = self
            .pending
            .iter()
            .filter(|(_, (d, _))| *d <= now_ms)
            .map(|(l, (_, o))| (*l, *o))
            .collect();
        for (l, _) in &late {
            self.pending.remove(l);
        }
        late
    }

    pub fn len(&self) -> usize {
        self.pending.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }
}

/// Signs a lease event.
pub fn lease_event(
    key: &Keypair,
    lease_id: Id,
    order_id: Id,
    kind: LeaseEventKind,
    now_ms: u64,
) -> Signed<LeaseEvent> {
    Signed::sign(
        LeaseEvent { version: leasemesh_protocol::v(), lease_id, order_id, at_ms: now_ms, kind },
        key,
    )
}

/// A failure reason that fits the protocol: no control characters, bounded length.
pub fn failure(reason: &str) -> LeaseEventKind {
    let reason: String = reason
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_REASON_CHARS)
        .collect();
    LeaseEventKind::Failed { reason }
}

/// True once a lease that started running at `running_at_ms` has used its whole term.
pub fn term_ended(running_at_ms: u64, lease_term_ms: u64, now_ms: u64) -> bool {
    now_ms >= running_at_ms.saturating_add(lease_term_ms)
}

/// Milliseconds since the Unix epoch by the local clock.
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Runs awarded leases on the Docker runtime and signs their events.
pub struct LeaseRunner {
    pub runtime: DockerRuntime,
    pub key: Keypair,
    pub encryption_secret: StaticSecret,
    pub metrics: ProviderMetrics,
}

impl std::fmt::Debug for LeaseRunner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret.
        f.debug_struct("LeaseRunner").field("key", &self.key).finish_non_exhaustive()
    }
}

impl LeaseRunner {
    /// Opens the manifest, checks it against the order, starts the containers, and returns the
    /// signed events in order: `ManifestAccepted` then `Running`, or a single or second
    /// `Failed`. If the start does not finish within `deadline`, the lease's containers are
    /// removed and it fails.
    pub async fn run(
        &self,
        lease_id: Id,
        order_id: Id,
        order: &Order,
        sealed: &SealedManifest,
        alloc: &Allocation,
        deadline: Duration,
    ) -> Vec<Signed<LeaseEvent>> {
        let ev = |kind| lease_event(&self.key, lease_id, order_id, kind, unix_ms());
        let manifest = match seal::open(sealed, &self.encryption_secret, &order.manifest_hash) {
            Ok(m) => m,
            Err(e) => {
                self.metrics.leases_failed.inc();
                return vec![ev(failure(&format!("manifest refused: {e}")))];
            }
        };
        let spec = match lease_spec(lease_id, order, &manifest, alloc) {
            Ok(s) => s,
            Err(e) => {
                self.metrics.leases_failed.inc();
                return vec![ev(failure(&e.to_string()))];
            }
        };
        let mut events = vec![ev(LeaseEventKind::ManifestAccepted)];
        match tokio::time::timeout(deadline, self.runtime.start(&spec)).await {
            Ok(Ok(endpoints)) => {
                self.metrics.leases_running.inc();
                events.push(ev(LeaseEventKind::Running { endpoints }));
            }
            Ok(Err(e)) => {
                self.metrics.leases_failed.inc();
                events.push(ev(failure(&format!("start failed: {e}"))));
            }
            Err(_) => {
                // The start was cut short: remove whatever it created.
                if let Err(e) = self.runtime.close(&lease_id).await {
                    tracing::warn!(lease = %lease_id.short(), error = %e, "cleanup after deadline");
                }
                self.metrics.leases_failed.inc();
                events.push(ev(failure(&format!(
                    "not running within the deadline of {} ms",
                    deadline.as_millis()
                ))));
            }
        }
        events
    }

    /// Stops and removes the lease's containers and network, and signs `Closed`. The caller
    /// then frees the allocation ([`Inventory::release_lease`](super::inventory::Inventory)).
    pub async fn close(
        &self,
        lease_id: Id,
        order_id: Id,
        reason: CloseReason,
    ) -> Result<Signed<LeaseEvent>, RuntimeError> {
        self.runtime.close(&lease_id).await?;
        Ok(lease_event(&self.key, lease_id, order_id, LeaseEventKind::Closed { reason }, unix_ms()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overdue_leases_fail_once() {
        let mut p = PendingLeases::default();
        let (a, b) = (Id::domain("l", &[b"a"]), Id::domain("l", &[b"b"]));
        let o = Id::domain("o", &[b"x"]);
        p.add(a, o, 1_000);
        p.add(b, o, 2_000);
        assert!(p.overdue(999).is_empty());
        assert_eq!(p.overdue(1_000), vec![(a, o)]);
        assert!(p.overdue(1_500).is_empty(), "reported once");
        assert!(p.settle(&b), "b acknowledged in time");
        assert!(p.overdue(10_000).is_empty());
        assert!(p.is_empty());
    }

    #[test]
    fn term_ends_exactly_after_the_lease_term() {
        assert!(!term_ended(1_000, 5_000, 5_999));
        assert!(term_ended(1_000, 5_000, 6_000));
        assert!(term_ended(u64::MAX - 1, 5_000, u64::MAX), "no overflow at the end of time");
        assert!(!term_ended(u64::MAX - 10, 5_000, u64::MAX - 1));
    }

    #[test]
    fn failure_reason_is_sanitized_and_events_verify() {
        let k = Keypair::from_seed_label("p");
        let kind = failure(&format!("bad\nthing{}", "x".repeat(5000)));
        let ev = lease_event(&k, Id::domain("l", &[]), Id::domain("o", &[]), kind, 5);
        let back = Signed::<LeaseEvent>::decode_verified(&ev.encode()).unwrap();
        match back.body.kind {
            LeaseEventKind::Failed { reason } => {
                assert!(reason.starts_with("bad thing"));
                assert_eq!(reason.chars().count(), MAX_REASON_CHARS);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}
