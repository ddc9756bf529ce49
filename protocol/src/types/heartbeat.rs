//! [`Heartbeat`]: a provider's signed "still here".

use serde::{Deserialize, Serialize};

use super::MAX_HEARTBEAT_SIZE;
use crate::codec::Signable;
use crate::crypto::PublicKey;
use crate::validate::ValidationError;

/// A provider's signed "still here". Silence longer than an order's grace period stops accrual.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heartbeat {
    pub version: u8,
    pub provider: PublicKey,
    pub sequence: u64,
    pub at_ms: u64,
    /// Sequence of the provider's latest [`ProviderInfo`](super::ProviderInfo).
    pub info_sequence: u64,
}

impl Signable for Heartbeat {
    const DOMAIN: &'static str = "leasemesh/v1/heartbeat";
    const MAX_SIZE: usize = MAX_HEARTBEAT_SIZE;
    const NAME: &'static str = "heartbeat";

    fn version(&self) -> u8 {
        self.version
    }

    fn author(&self) -> Option<&PublicKey> {
        Some(&self.provider)
    }

    fn validate(&self) -> Result<(), ValidationError> {
        Ok(())
    }
}
