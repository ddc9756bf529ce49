//! Who may be charged: an order's `tenant_address` is charged only when the order's signer
//! controls it. Rules only; the settler keeps the bindings.
//!
//! - Any backend: the address is the signer's key in hex, or the genesis lists the signer's key
//!   for the address (the genesis is the mesh operator's own word). This is also the rule for
//!   signed spend grants on the embedded ledger ([`listed_controls`]).
//! - Chain backends: a binding the address's chain key signed (ADR-036, see
//!   `leasemesh_protocol::binding`), verified into a [`StoredBinding`]. The first binding of an
//!   address stands ([`StoredBinding::check_rebind`]): a binding carries no nonce, so letting a
//!   later one replace it would let anyone replay an old one.
//!
//! A lease whose order's signer does not control its `tenant_address` is never charged to that
//! address: it is treated as a tenant with no funds
//! ([`cap_to_funds_controlled`](crate::round::cap_to_funds_controlled)).

use leasemesh_protocol::PublicKey;

/// The rule without chain bindings: `address` is `signer`'s key in hex, or `listed` (the
/// genesis' `(address, key)` pairs) names `signer` for `address`.
pub fn listed_controls<'a>(
    listed: impl IntoIterator<Item = (&'a str, Option<&'a PublicKey>)>,
    address: &str,
    signer: &PublicKey,
) -> bool {
    address == signer.to_hex() || listed.into_iter().any(|(a, k)| a == address && k == Some(signer))
}

/// Why a binding was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BindError {
    #[error(
        "bindings are for chain backends: this mesh settles on the embedded ledger, where the \
         address is the key's hex or the genesis lists the key (use POST /v1/ledger/grants)"
    )]
    NotAChain,
    #[cfg(feature = "cosmos")]
    #[error("invalid binding: {0}")]
    Invalid(#[from] leasemesh_protocol::binding::BindingError),
    #[error("address {address} is not on this chain (its prefix is not {prefix:?})")]
    WrongPrefix { address: String, prefix: String },
    #[error("address {address} is already bound to another tenant key ({existing})")]
    AlreadyBound { address: String, existing: PublicKey },
    #[error("settlement database: {0}")]
    Db(#[from] sled::Error),
    #[error("stored binding is corrupt: {0}")]
    Corrupt(String),
}

/// A verified binding, as it is stored and served.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StoredBinding {
    pub address: String,
    pub tenant_key_hex: String,
    pub pubkey_hex: String,
    pub signature_b64: String,
}

impl StoredBinding {
    /// Verifies a posted binding for a chain whose addresses start with `prefix`.
    #[cfg(feature = "cosmos")]
    pub fn verify(
        req: &leasemesh_protocol::binding::BindingRequest,
        prefix: &str,
    ) -> Result<StoredBinding, BindError> {
        let b = leasemesh_protocol::binding::Binding::verify_request(req)?;
        if !b.address.strip_prefix(prefix).is_some_and(|rest| rest.starts_with('1')) {
            return Err(BindError::WrongPrefix { address: b.address, prefix: prefix.into() });
        }
        let r = b.to_request();
        Ok(StoredBinding {
            address: r.address,
            tenant_key_hex: r.tenant_key_hex,
            pubkey_hex: r.pubkey_hex,
            signature_b64: r.signature_b64,
        })
    }

    /// Whether `signer` is the tenant key bound here.
    pub fn binds(&self, signer: &PublicKey) -> bool {
        self.tenant_key_hex == signer.to_hex()
    }

    /// `new` may stand beside `self`, the binding already stored for its address, only if it
    /// binds the same tenant key (posting the same binding twice is fine).
    pub fn check_rebind(&self, new: &StoredBinding) -> Result<(), BindError> {
        if self.tenant_key_hex == new.tenant_key_hex {
            return Ok(());
        }
        let existing = PublicKey::from_hex(&self.tenant_key_hex)
            .map_err(|e| BindError::Corrupt(e.to_string()))?;
        Err(BindError::AlreadyBound { address: new.address.clone(), existing })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use leasemesh_protocol::Keypair;

    #[test]
    fn an_address_is_controlled_by_its_keys_hex_or_a_listed_key() {
        let k = Keypair::from_seed_label("owner").public();
        let other = Keypair::from_seed_label("other").public();
        let listed = [("acct", Some(&k))];
        assert!(listed_controls(listed, &k.to_hex(), &k));
        assert!(listed_controls(listed, "acct", &k));
        assert!(!listed_controls(listed, "acct", &other));
        assert!(!listed_controls(listed, &k.to_hex(), &other));
        assert!(!listed_controls([("acct", None)], "acct", &k));
    }

    #[test]
    fn the_first_binding_of_an_address_stands() {
        let k = Keypair::from_seed_label("tenant").public();
        let other = Keypair::from_seed_label("other").public();
        let b = |key: &PublicKey| StoredBinding {
            address: "inj1x".into(),
            tenant_key_hex: key.to_hex(),
            pubkey_hex: "02".into(),
            signature_b64: "s".into(),
        };
        assert!(b(&k).binds(&k) && !b(&k).binds(&other));
        assert!(b(&k).check_rebind(&b(&k)).is_ok());
        match b(&k).check_rebind(&b(&other)) {
            Err(BindError::AlreadyBound { existing, .. }) => assert_eq!(existing, k),
            other => panic!("{other:?}"),
        }
        let mut corrupt = b(&k);
        corrupt.tenant_key_hex = "zz".into();
        assert!(matches!(corrupt.check_rebind(&b(&other)), Err(BindError::Corrupt(_))));
    }

    #[cfg(feature = "cosmos")]
    #[test]
    fn a_binding_verifies_only_on_its_own_chain() {
        let tenant = Keypair::from_seed_label("tenant").public();
        let req = leasemesh_protocol::binding::Binding::sign(&[7; 32], "inj", &tenant)
            .unwrap()
            .to_request();
        let stored = StoredBinding::verify(&req, "inj").unwrap();
        assert!(stored.binds(&tenant));
        assert!(matches!(
            StoredBinding::verify(&req, "cosmos"),
            Err(BindError::WrongPrefix { .. })
        ));
        let mut forged = req.clone();
        forged.tenant_key_hex = Keypair::from_seed_label("x").public().to_hex();
        assert!(matches!(StoredBinding::verify(&forged, "inj"), Err(BindError::Invalid(_))));
    }
}
