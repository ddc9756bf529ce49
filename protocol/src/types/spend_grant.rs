//! [`SpendGrant`]: a tenant's signed permission for the settler on the embedded ledger.

use serde::{Deserialize, Serialize};

use super::{amount_serde, Coin};
use crate::codec::Signable;
use crate::crypto::PublicKey;
use crate::validate::{coin, ident, ValidationError};

/// Largest encoded signed spend grant, in bytes.
pub const MAX_SPEND_GRANT_SIZE: usize = 1024;

/// A tenant's signed permission for the settlement settler to move up to `limit` of `denom`
/// from `tenant_address` on the embedded ledger (`POST /v1/ledger/grants`). On a Cosmos chain the
/// same permission is an authz `SendAuthorization` instead. The settler checks that the signer
/// controls `tenant_address`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpendGrant {
    pub version: u8,
    pub tenant_address: String,
    /// The settlement settler's ledger address.
    pub settler_address: String,
    pub denom: String,
    /// Most the settler may move from the tenant in this denom; 0 revokes.
    #[serde(with = "amount_serde")]
    pub limit: u128,
    pub created_at_ms: u64,
}

impl Signable for SpendGrant {
    const DOMAIN: &'static str = "leasemesh/v1/spend-grant";
    const MAX_SIZE: usize = MAX_SPEND_GRANT_SIZE;
    const NAME: &'static str = "spend grant";

    fn version(&self) -> u8 {
        self.version
    }

    /// The settler decides whether the signer controls `tenant_address`.
    fn author(&self) -> Option<&PublicKey> {
        None
    }

    fn validate(&self) -> Result<(), ValidationError> {
        ident("tenant_address", &self.tenant_address, 128)?;
        ident("settler_address", &self.settler_address, 128)?;
        coin("denom", &Coin::new(self.denom.clone(), self.limit))
    }
}
