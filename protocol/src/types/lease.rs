//! [`LeaseEvent`]: a signed event in a lease's life, and why a lease ends ([`CloseReason`]).

use serde::{Deserialize, Serialize};

use super::MAX_LEASE_EVENT_SIZE;
use crate::codec::Signable;
use crate::crypto::{Id, PublicKey};
use crate::validate::{max_len, text, ValidationError};

/// Why a lease ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CloseReason {
    /// The tenant closed it.
    TenantClosed,
    /// The lease term ran out.
    TermEnded,
    /// The tenant's funds or spend grant ran out.
    InsufficientFunds,
    /// The provider closed it.
    ProviderClosed,
    /// The provider stayed silent longer than the grace period.
    ProviderSilent,
}

/// What happened to a lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LeaseEventKind {
    /// The provider opened the manifest and its hash matches the order.
    ManifestAccepted,
    /// Every replica runs; endpoints are URIs the tenant can reach.
    Running {
        endpoints: Vec<String>,
    },
    /// The lease could not start or broke; the tenant pays nothing from this point.
    Failed {
        reason: String,
    },
    Closed {
        reason: CloseReason,
    },
}

/// A signed event in a lease's life, by its provider or its tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseEvent {
    pub version: u8,
    pub lease_id: Id,
    pub order_id: Id,
    pub at_ms: u64,
    pub kind: LeaseEventKind,
}

impl Signable for LeaseEvent {
    const DOMAIN: &'static str = "leasemesh/v1/lease-event";
    const MAX_SIZE: usize = MAX_LEASE_EVENT_SIZE;
    const NAME: &'static str = "lease event";

    fn version(&self) -> u8 {
        self.version
    }

    /// Provider or tenant may sign: the node checks the signer against the lease.
    fn author(&self) -> Option<&PublicKey> {
        None
    }

    fn validate(&self) -> Result<(), ValidationError> {
        match &self.kind {
            LeaseEventKind::Running { endpoints } => {
                max_len("kind.running.endpoints", endpoints, 64)?;
                for e in endpoints {
                    text("kind.running.endpoints", e, 256)?;
                }
            }
            LeaseEventKind::Failed { reason } => text("kind.failed.reason", reason, 1024)?,
            LeaseEventKind::ManifestAccepted | LeaseEventKind::Closed { .. } => {}
        }
        Ok(())
    }
}
