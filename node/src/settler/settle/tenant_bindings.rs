//! Who may be charged: an order's `tenant_address` is charged only when the order's signer
//! controls it.
//!
//! - Any backend: the address is the signer's key in hex, or a genesis balance lists the
//!   signer's key for the address (the genesis is the mesh operator's own word). This is also
//!   the rule for signed spend grants on the embedded ledger ([`listed_controls`]).
//! - Cosmos: a binding the address's chain key signed (ADR-036, see
//!   [`leasemesh_protocol::binding`]), posted to `POST /v1/ledger/bindings` and kept in the
//!   `settler/tenant_bindings` tree: address → the tenant's ed25519 key. The first binding of an
//!   address stands: a binding carries no nonce, so letting a later one replace it would let
//!   anyone replay an old one.
//!
//! A lease whose order's signer does not control its `tenant_address` is never charged to that
//! address: it is treated as a tenant with no funds ([`cap_to_funds_controlled`]), so it pays
//! nothing, ends with `Closed(InsufficientFunds)` and the provider stops it.

use std::collections::{BTreeMap, BTreeSet};

use leasemesh_protocol::{CloseReason, Id, PublicKey};
use leasemesh_settlement::accrual::{LeaseAccrual, LeaseEnd};

use super::{cap_to_funds, Funds, SettleError, Settlement};
use crate::settler::genesis::Genesis;
use crate::store::Store;

/// The sled tree of bindings (address → JSON of the verified binding request).
pub(super) const TREE: &str = "settler/tenant_bindings";

/// The rule without chain bindings: `address` is `signer`'s key in hex, or a genesis balance
/// lists `signer` for `address`.
pub fn listed_controls(genesis: &Genesis, address: &str, signer: &PublicKey) -> bool {
    address == signer.to_hex()
        || genesis.balances.iter().any(|b| b.address == address && b.key == Some(*signer))
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

/// A stored binding, as `GET /v1/ledger/bindings/{address}` serves it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StoredBinding {
    pub address: String,
    pub tenant_key_hex: String,
    pub pubkey_hex: String,
    pub signature_b64: String,
}

/// Like [`cap_to_funds`], with the leases in `uncontrolled` treated as having no funds at all:
/// each pays nothing and ends at its `to_ms` with `InsufficientFunds` (unless it had already
/// ended), even when it owed nothing yet, so it never runs unpaid. Returns `(owed, paid)` per
/// capped accrual's index, as [`cap_to_funds`] does.
pub fn cap_to_funds_controlled(
    accruals: &mut [LeaseAccrual],
    funds: &Funds,
    uncontrolled: &BTreeSet<Id>,
) -> BTreeMap<usize, (u128, u128)> {
    let (bad, good): (Vec<usize>, Vec<usize>) =
        (0..accruals.len()).partition(|&i| uncontrolled.contains(&accruals[i].terms.lease_id));
    let mut sub: Vec<LeaseAccrual> = good.iter().map(|&i| accruals[i].clone()).collect();
    let mut out: BTreeMap<usize, (u128, u128)> =
        cap_to_funds(&mut sub, funds).into_iter().map(|(j, v)| (good[j], v)).collect();
    for (j, a) in sub.into_iter().enumerate() {
        accruals[good[j]] = a;
    }
    for i in bad {
        let a = &mut accruals[i];
        let owed = a.amount;
        a.amount = 0;
        a.cursor.accrued_amount = a.cursor.accrued_amount.saturating_sub(owed);
        if a.closed.is_none() {
            a.closed = Some(LeaseEnd { at_ms: a.to_ms, reason: CloseReason::InsufficientFunds });
        }
        a.cursor.closed = true;
        out.insert(i, (owed, 0));
    }
    out
}

impl Settlement {
    /// The tenant key bound to `address` on the chain backend, if any.
    pub fn binding(&self, address: &str) -> Result<Option<StoredBinding>, BindError> {
        self.bindings
            .get(address.as_bytes())?
            .map(|v| serde_json::from_slice(&v).map_err(|e| BindError::Corrupt(e.to_string())))
            .transpose()
    }

    /// Whether `signer` controls `address`: see the module's rule.
    pub fn controls(&self, address: &str, signer: &PublicKey) -> Result<bool, BindError> {
        if listed_controls(&self.genesis, address, signer) {
            return Ok(true);
        }
        if self.is_local() {
            return Ok(false);
        }
        Ok(self.binding(address)?.is_some_and(|b| b.tenant_key_hex == signer.to_hex()))
    }

    /// Verifies and stores a binding (chain backends only). Posting the same binding again is
    /// fine; binding a bound address to another key is refused.
    #[cfg(feature = "cosmos")]
    pub fn bind(
        &self,
        req: &leasemesh_protocol::binding::BindingRequest,
    ) -> Result<StoredBinding, BindError> {
        let Backend::Cosmos(c) = &self.backend else { return Err(BindError::NotAChain) };
        let b = leasemesh_protocol::binding::Binding::verify_request(req)?;
        let prefix = &c.client().config().account_prefix;
        if !b.address.strip_prefix(prefix.as_str()).is_some_and(|rest| rest.starts_with('1')) {
            return Err(BindError::WrongPrefix { address: b.address, prefix: prefix.clone() });
        }
        let r = b.to_request();
        let stored = StoredBinding {
            address: r.address,
            tenant_key_hex: r.tenant_key_hex,
            pubkey_hex: r.pubkey_hex,
            signature_b64: r.signature_b64,
        };
        let bytes = serde_json::to_vec(&stored).map_err(|e| BindError::Corrupt(e.to_string()))?;
        let prev = self.bindings.compare_and_swap(
            stored.address.as_bytes(),
            None as Option<&[u8]>,
            Some(bytes),
        )?;
        if prev.is_err() {
            let existing = self.binding(&stored.address)?.ok_or_else(|| {
                BindError::Corrupt("binding vanished during compare-and-swap".into())
            })?;
            if existing.tenant_key_hex != stored.tenant_key_hex {
                let existing = PublicKey::from_hex(&existing.tenant_key_hex)
                    .map_err(|e| BindError::Corrupt(e.to_string()))?;
                return Err(BindError::AlreadyBound { address: stored.address, existing });
            }
        }
        self.bindings.flush()?;
        tracing::info!(address = %stored.address, tenant_key = %stored.tenant_key_hex, "tenant key bound to a chain address");
        Ok(stored)
    }

    /// The leases of `accruals` whose order's signer does not control its `tenant_address`
    /// (an order this node does not hold counts as uncontrolled). Each is logged.
    pub(super) fn uncontrolled(
        &self,
        store: &Store,
        accruals: &[LeaseAccrual],
    ) -> Result<BTreeSet<Id>, SettleError> {
        let mut out = BTreeSet::new();
        for a in accruals {
            let signer = store.order(&a.terms.order_id)?.map(|o| o.signer);
            let ok = match signer {
                Some(s) => self
                    .controls(&a.terms.tenant_address, &s)
                    .map_err(|e| SettleError::Corrupt(e.to_string()))?,
                None => false,
            };
            if !ok {
                tracing::warn!(
                    lease = %a.terms.lease_id.short(), tenant = %a.terms.tenant_address,
                    signer = ?signer,
                    "the order's signer does not control the tenant address: not charged, lease closed"
                );
                out.insert(a.terms.lease_id);
            }
        }
        Ok(out)
    }
}

#[cfg(feature = "cosmos")]
use super::Backend;

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use leasemesh_protocol::{Coin, Hash, Keypair};
    use leasemesh_settlement::accrual::{AccrualCursor, LeaseTerms};

    use crate::settler::settle::tests as settle_tests;

    fn accrual(lease: u8, tenant: &str, amount: u128) -> LeaseAccrual {
        LeaseAccrual {
            terms: LeaseTerms {
                lease_id: Hash::domain("test/lease", &[&[lease]]),
                order_id: Hash::domain("test/order", &[&[lease]]),
                tenant_address: tenant.into(),
                provider_address: "p".into(),
                price_per_hour: Coin::new("uakt", 3600),
                lease_term_ms: 3_600_000,
                grace_period_ms: 60_000,
            },
            opened_at_ms: None,
            from_ms: 1000,
            to_ms: 5000,
            amount,
            closed: None,
            cursor: AccrualCursor {
                started_at_ms: 0,
                accrued_to_ms: 5000,
                accrued_amount: amount,
                closed: false,
            },
        }
    }

    #[test]
    fn an_uncontrolled_lease_pays_nothing_and_ends_while_the_owner_pays_in_full() {
        // Lease 1 is the owner's; lease 2 names the same address but its order's signer does
        // not control it; lease 3 is uncontrolled and owes nothing yet.
        let mut accruals =
            vec![accrual(1, "victim", 40), accrual(2, "victim", 50), accrual(3, "victim", 0)];
        let mut funds = Funds::new();
        funds.insert(("victim".into(), "uakt".into()), 60);
        let bad: BTreeSet<Id> =
            [accruals[1].terms.lease_id, accruals[2].terms.lease_id].into_iter().collect();
        let capped = cap_to_funds_controlled(&mut accruals, &funds, &bad);
        assert_eq!(capped, BTreeMap::from([(1, (50, 0)), (2, (0, 0))]));
        assert_eq!(accruals.iter().map(|a| a.amount).collect::<Vec<_>>(), vec![40, 0, 0]);
        assert_eq!(accruals[0], accrual(1, "victim", 40), "the owner's own lease is untouched");
        for a in &accruals[1..] {
            assert_eq!(
                a.closed.map(|e| (e.at_ms, e.reason)),
                Some((5000, CloseReason::InsufficientFunds))
            );
            assert!(a.cursor.closed);
            assert_eq!(a.cursor.accrued_amount, 0, "the cursor counts nothing charged");
        }
        // Without uncontrolled leases it is exactly cap_to_funds.
        let mut a1 = vec![accrual(1, "t", 40), accrual(2, "t", 50)];
        let mut a2 = a1.clone();
        assert_eq!(
            cap_to_funds_controlled(&mut a1, &funds, &BTreeSet::new()),
            cap_to_funds(&mut a2, &funds)
        );
        assert_eq!(a1, a2);
    }

    fn genesis_with(address: &str, key: PublicKey) -> Genesis {
        toml::from_str(&format!(
            "network = \"t\"\nepoch_ms = 1000\nsettlers = [\"{}\"]\n\n[[balances]]\naddress = \"{address}\"\ndenom = \"uakt\"\namount = \"1000000000\"\nkey = \"{}\"\n\n[[grants]]\ntenant = \"{address}\"\ndenom = \"uakt\"\nlimit = \"1000000000\"\n",
            leasemesh_protocol::samples::settler_key().public().to_hex(),
            key.to_hex()
        ))
        .unwrap()
    }

    /// Someone posts an order naming an address its key does not control: the lease is never
    /// charged to that address and the settler closes it, while the batch still anchors.
    #[tokio::test]
    async fn an_order_naming_someone_elses_address_is_not_charged_and_is_closed() {
        use crate::ingest::{Ingest, Kind, Reason};
        use leasemesh_protocol::{samples, LeaseEventKind, Signed};
        let (tx, _) = tokio::sync::broadcast::channel(16);
        let store = Store::temporary().unwrap();
        let settler = samples::settler_key();
        let ing = Ingest::new(store.clone(), tx).with_settlers(vec![settler.public()]);
        let now = samples::SAMPLE_TIME_MS + 1;
        let ok = |kind, bytes: &[u8]| {
            let r = ing.ingest(kind, &[bytes], now);
            assert_eq!(r[0].reason, Reason::Ok, "{}", r[0].detail);
        };
        let order = samples::signed_order();
        let victim = order.body.tenant_address.clone();
        ok(Kind::Order, &order.encode());
        let pk = samples::provider_key();
        let info = Signed::sign(samples::provider_info(), &pk);
        ok(Kind::ProviderInfo, &info.encode());
        ok(Kind::MatchBatch, &Signed::sign(samples::match_batch(), &settler).encode());
        let a = samples::award();
        let t0 = now + 1000;
        ok(Kind::LeaseEvent, &settle_tests::running(&a, &pk, t0));
        for i in 1..=10u64 {
            ok(Kind::Heartbeat, &settle_tests::heartbeat(&pk, i, t0 + i * 1000, 1));
        }
        // The genesis says the victim's address belongs to another key than the order's signer.
        let owner = Keypair::from_seed_label("the real owner").public();
        assert_ne!(owner, order.signer);
        let dir = tempfile::tempdir().unwrap();
        let mut s = Settlement::open(
            &dir.path().join("s"),
            settler.clone(),
            genesis_with(&victim, owner),
            #[cfg(feature = "cosmos")]
            None,
        )
        .await
        .unwrap();
        assert!(!s.controls(&victim, &order.signer).unwrap());
        assert!(s.controls(&victim, &owner).unwrap());
        let round = s.settle_once(&store, t0 + 10_000).await.unwrap().expect("a batch");
        assert_eq!(s.ledger.balance(&victim, "uakt").unwrap(), 1_000_000_000, "not charged");
        assert_eq!(s.ledger.balance(&info.body.chain_address, "uakt").unwrap(), 0);
        assert_eq!(round.shortfalls.len(), 1);
        assert_eq!(round.shortfalls[0].paid, 0);
        let closes = s.closes_to_publish(&store).unwrap();
        assert_eq!(closes.len(), 1);
        assert_eq!(
            closes[0].body.kind,
            LeaseEventKind::Closed { reason: CloseReason::InsufficientFunds }
        );
        ok(Kind::LeaseEvent, &closes[0].encode());
        assert_eq!(store.lease(&a.lease_id()).unwrap().unwrap().state, "closed");
        assert!(s.settle_once(&store, t0 + 20_000).await.unwrap().is_none(), "closed for good");
        // The embedded ledger takes no chain bindings.
        #[cfg(feature = "cosmos")]
        {
            let tenant = samples::tenant_key().public();
            let req = leasemesh_protocol::binding::Binding::sign(&[7; 32], "inj", &tenant)
                .unwrap()
                .to_request();
            assert!(matches!(s.bind(&req), Err(BindError::NotAChain)));
        }
    }

    /// On the Cosmos backend a verified binding makes its tenant key control the address; the
    /// first binding stands, another key is refused, bad signatures and foreign prefixes too.
    #[cfg(feature = "cosmos")]
    #[tokio::test]
    async fn a_chain_binding_makes_the_tenant_key_control_the_address() {
        use leasemesh_protocol::binding::{Binding, BindingError};
        use leasemesh_protocol::samples;
        use leasemesh_settlement::cosmos::{ChainConfig, Cosmos, CosmosConfig, SigningKey};
        // Nothing here talks to the chain: an unreachable RPC is fine.
        let chain = ChainConfig::injective("http://127.0.0.1:9", "injective-777");
        let settler_chain_key = SigningKey::from_slice(&[9; 32]).unwrap();
        let cosmos = Cosmos::new(CosmosConfig::new(chain), settler_chain_key).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let tenant = samples::tenant_key().public();
        let other = Keypair::from_seed_label("other").public();
        let s = Settlement::open(
            &dir.path().join("s"),
            samples::settler_key(),
            genesis_with("listed", other),
            Some(cosmos),
        )
        .await
        .unwrap();
        let b = Binding::sign(&[7; 32], "inj", &tenant).unwrap();
        assert!(!s.controls(&b.address, &tenant).unwrap());
        assert_eq!(s.binding(&b.address).unwrap(), None);
        let stored = s.bind(&b.to_request()).unwrap();
        assert_eq!(stored.tenant_key_hex, tenant.to_hex());
        assert_eq!(s.binding(&b.address).unwrap(), Some(stored.clone()));
        assert!(s.controls(&b.address, &tenant).unwrap());
        assert!(!s.controls(&b.address, &other).unwrap());
        // Posting it again is fine; binding the address to another key is not.
        assert_eq!(s.bind(&b.to_request()).unwrap(), stored);
        let again = Binding::sign(&[7; 32], "inj", &other).unwrap();
        assert!(matches!(s.bind(&again.to_request()), Err(BindError::AlreadyBound { .. })));
        assert!(!s.controls(&b.address, &other).unwrap());
        // A signature for another tenant key does not verify.
        let mut forged = Binding::sign(&[8; 32], "inj", &tenant).unwrap();
        forged.tenant_key = other;
        assert!(matches!(
            s.bind(&forged.to_request()),
            Err(BindError::Invalid(BindingError::BadSignature))
        ));
        // Another chain's prefix.
        let cosmos_addr = Binding::sign(&[8; 32], "cosmos", &tenant).unwrap();
        assert!(matches!(s.bind(&cosmos_addr.to_request()), Err(BindError::WrongPrefix { .. })));
        // The genesis-listed key still controls its address on a chain backend.
        assert!(s.controls("listed", &other).unwrap());
        assert!(!s.controls("listed", &tenant).unwrap());
    }

    #[test]
    fn the_listed_rule_is_the_keys_hex_or_a_genesis_balance_naming_the_key() {
        let k = Keypair::from_seed_label("owner").public();
        let other = Keypair::from_seed_label("other").public();
        let mut g: Genesis = toml::from_str(&format!(
            "network = \"t\"\nepoch_ms = 1000\nsettlers = [\"{}\"]\n\n[[balances]]\naddress = \"acct\"\ndenom = \"uakt\"\namount = \"1\"\nkey = \"{}\"\n",
            other.to_hex(),
            k.to_hex()
        ))
        .unwrap();
        assert!(listed_controls(&g, &k.to_hex(), &k));
        assert!(listed_controls(&g, "acct", &k));
        assert!(!listed_controls(&g, "acct", &other));
        assert!(!listed_controls(&g, &k.to_hex(), &other));
        g.balances[0].key = None;
        assert!(!listed_controls(&g, "acct", &k));
    }
}

/// The routes `POST /v1/ledger/bindings` and `GET /v1/ledger/bindings/{address}` (merged into
/// the settler's router in [`crate::settler::api`]).
pub mod api {
    use std::sync::Arc;

    use axum::extract::{Path, State};
    use axum::http::StatusCode;
    use axum::response::{IntoResponse, Response};
    use axum::Json;
    use serde_json::json;

    use super::BindError;
    use crate::settler::api::{error, not_settler};
    use crate::settler::Shared;

    fn refused(e: &BindError) -> Response {
        let (status, code) = match e {
            BindError::NotAChain => (StatusCode::BAD_REQUEST, "not_a_chain_backend"),
            #[cfg(feature = "cosmos")]
            BindError::Invalid(b) => {
                use leasemesh_protocol::binding::BindingError as B;
                match b {
                    B::AddressMismatch { .. } | B::BadSignature | B::HighS => {
                        (StatusCode::UNPROCESSABLE_ENTITY, "binding_does_not_verify")
                    }
                    _ => (StatusCode::BAD_REQUEST, "bad_binding"),
                }
            }
            BindError::WrongPrefix { .. } => (StatusCode::BAD_REQUEST, "wrong_chain_prefix"),
            BindError::AlreadyBound { .. } => (StatusCode::CONFLICT, "already_bound"),
            BindError::Db(_) | BindError::Corrupt(_) => {
                (StatusCode::INTERNAL_SERVER_ERROR, "internal")
            }
        };
        error(status, code, e)
    }

    /// `POST /v1/ledger/bindings`.
    pub async fn post_binding(State(s): State<Arc<Shared>>, body: axum::body::Bytes) -> Response {
        let Some(settlement) = &s.settlement else { return not_settler() };
        if settlement.lock().await.is_local() {
            return refused(&BindError::NotAChain);
        }
        #[cfg(feature = "cosmos")]
        {
            let req: leasemesh_protocol::binding::BindingRequest =
                match serde_json::from_slice(&body) {
                    Ok(r) => r,
                    Err(e) => return error(StatusCode::BAD_REQUEST, "bad_json", e),
                };
            let bound = settlement.lock().await.bind(&req);
            match bound {
                Ok(b) => (StatusCode::CREATED, Json(json!(b))).into_response(),
                Err(e) => refused(&e),
            }
        }
        #[cfg(not(feature = "cosmos"))]
        {
            let _ = body;
            refused(&BindError::NotAChain)
        }
    }

    /// `GET /v1/ledger/bindings/{address}`.
    pub async fn get_binding(
        State(s): State<Arc<Shared>>,
        Path(address): Path<String>,
    ) -> Response {
        let Some(settlement) = &s.settlement else { return not_settler() };
        let found = settlement.lock().await.binding(&address);
        match found {
            Ok(Some(b)) => Json(json!(b)).into_response(),
            Ok(None) => error(
                StatusCode::NOT_FOUND,
                "not_bound",
                format!("no tenant key is bound to {address}"),
            ),
            Err(e) => refused(&e),
        }
    }
}
