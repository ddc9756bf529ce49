//! Who controls which tenant address, as this settler knows it: the genesis' listed keys, and
//! on a chain backend the bindings tenants posted (`POST /v1/ledger/bindings`), kept in the
//! `settler/tenant_bindings` tree (address → JSON of the verified binding). The rules are
//! [`leasemesh_settlement::control`]'s; this file owns the tree.

use leasemesh_protocol::PublicKey;
use leasemesh_settlement::control::{listed_controls, BindError, StoredBinding};

use super::genesis::Genesis;

/// The sled tree of bindings.
const TREE: &str = "settler/tenant_bindings";

/// The settler's bindings.
#[derive(Debug, Clone)]
pub struct Bindings {
    tree: sled::Tree,
    /// The genesis' `(address, key)` pairs.
    listed: Vec<(String, Option<PublicKey>)>,
    /// The chain's address prefix; `None` on the embedded ledger, which takes no bindings.
    chain_prefix: Option<String>,
}

impl Bindings {
    pub(super) fn open(
        db: &sled::Db,
        genesis: &Genesis,
        chain_prefix: Option<String>,
    ) -> Result<Bindings, sled::Error> {
        Ok(Bindings {
            tree: db.open_tree(TREE)?,
            listed: genesis.balances.iter().map(|b| (b.address.clone(), b.key)).collect(),
            chain_prefix,
        })
    }

    /// Whether this settler takes bindings (a chain backend).
    pub fn takes_bindings(&self) -> bool {
        self.chain_prefix.is_some()
    }

    /// The rule without chain bindings: see [`listed_controls`].
    pub fn listed_controls(&self, address: &str, signer: &PublicKey) -> bool {
        listed_controls(self.listed.iter().map(|(a, k)| (a.as_str(), k.as_ref())), address, signer)
    }

    /// The tenant key bound to `address`, if any.
    pub fn get(&self, address: &str) -> Result<Option<StoredBinding>, BindError> {
        self.tree
            .get(address.as_bytes())?
            .map(|v| serde_json::from_slice(&v).map_err(|e| BindError::Corrupt(e.to_string())))
            .transpose()
    }

    /// Whether `signer` controls `address`: listed in the genesis, or bound on a chain backend.
    pub fn controls(&self, address: &str, signer: &PublicKey) -> Result<bool, BindError> {
        if self.listed_controls(address, signer) {
            return Ok(true);
        }
        if !self.takes_bindings() {
            return Ok(false);
        }
        Ok(self.get(address)?.is_some_and(|b| b.binds(signer)))
    }

    /// Verifies and stores a binding (chain backends only). Posting the same binding again is
    /// fine; binding a bound address to another key is refused.
    #[cfg(feature = "cosmos")]
    pub fn bind(
        &self,
        req: &leasemesh_protocol::binding::BindingRequest,
    ) -> Result<StoredBinding, BindError> {
        let Some(prefix) = &self.chain_prefix else { return Err(BindError::NotAChain) };
        let stored = StoredBinding::verify(req, prefix)?;
        let bytes = serde_json::to_vec(&stored).map_err(|e| BindError::Corrupt(e.to_string()))?;
        let prev = self.tree.compare_and_swap(
            stored.address.as_bytes(),
            None as Option<&[u8]>,
            Some(bytes),
        )?;
        if prev.is_err() {
            let existing = self.get(&stored.address)?.ok_or_else(|| {
                BindError::Corrupt("binding vanished during compare-and-swap".into())
            })?;
            existing.check_rebind(&stored)?;
        }
        self.tree.flush()?;
        tracing::info!(address = %stored.address, tenant_key = %stored.tenant_key_hex, "tenant key bound to a chain address");
        Ok(stored)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use leasemesh_protocol::{CloseReason, Keypair};

    use crate::settler::settle::tests as settle_tests;
    use crate::settler::settle::Settlement;
    use crate::store::Store;

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
        let s = Settlement::open(
            &dir.path().join("s"),
            settler.clone(),
            genesis_with(&victim, owner),
            #[cfg(feature = "cosmos")]
            None,
        )
        .await
        .unwrap();
        assert!(!s.bindings().controls(&victim, &order.signer).unwrap());
        assert!(s.bindings().controls(&victim, &owner).unwrap());
        let round = s.settle_once(&store, t0 + 10_000).await.unwrap().expect("a batch");
        assert_eq!(s.ledger().balance(&victim, "uakt").unwrap(), 1_000_000_000, "not charged");
        assert_eq!(s.ledger().balance(&info.body.chain_address, "uakt").unwrap(), 0);
        assert_eq!(round.shortfalls.len(), 1);
        assert_eq!(round.shortfalls[0].paid, 0);
        let closes = s.closes_to_publish(&store).unwrap();
        assert_eq!(closes.len(), 1);
        assert_eq!(
            closes[0].body.kind,
            LeaseEventKind::Closed { reason: CloseReason::InsufficientFunds }
        );
        ok(Kind::LeaseEvent, &closes[0].encode());
        assert_eq!(
            store.lease(&a.lease_id()).unwrap().unwrap().state,
            crate::store::LeaseState::Closed
        );
        assert!(s.settle_once(&store, t0 + 20_000).await.unwrap().is_none(), "closed for good");
        // The embedded ledger takes no chain bindings.
        #[cfg(feature = "cosmos")]
        {
            let tenant = samples::tenant_key().public();
            let req = leasemesh_protocol::binding::Binding::sign(&[7; 32], "inj", &tenant)
                .unwrap()
                .to_request();
            assert!(matches!(s.bindings().bind(&req), Err(BindError::NotAChain)));
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
        assert!(!s.bindings().controls(&b.address, &tenant).unwrap());
        assert_eq!(s.bindings().get(&b.address).unwrap(), None);
        let stored = s.bindings().bind(&b.to_request()).unwrap();
        assert_eq!(stored.tenant_key_hex, tenant.to_hex());
        assert_eq!(s.bindings().get(&b.address).unwrap(), Some(stored.clone()));
        assert!(s.bindings().controls(&b.address, &tenant).unwrap());
        assert!(!s.bindings().controls(&b.address, &other).unwrap());
        // Posting it again is fine; binding the address to another key is not.
        assert_eq!(s.bindings().bind(&b.to_request()).unwrap(), stored);
        let again = Binding::sign(&[7; 32], "inj", &other).unwrap();
        assert!(matches!(
            s.bindings().bind(&again.to_request()),
            Err(BindError::AlreadyBound { .. })
        ));
        assert!(!s.bindings().controls(&b.address, &other).unwrap());
        // A signature for another tenant key does not verify.
        let mut forged = Binding::sign(&[8; 32], "inj", &tenant).unwrap();
        forged.tenant_key = other;
        assert!(matches!(
            s.bindings().bind(&forged.to_request()),
            Err(BindError::Invalid(BindingError::BadSignature))
        ));
        // Another chain's prefix.
        let cosmos_addr = Binding::sign(&[8; 32], "cosmos", &tenant).unwrap();
        assert!(matches!(
            s.bindings().bind(&cosmos_addr.to_request()),
            Err(BindError::WrongPrefix { .. })
        ));
        // The genesis-listed key still controls its address on a chain backend.
        assert!(s.bindings().controls("listed", &other).unwrap());
        assert!(!s.bindings().controls("listed", &tenant).unwrap());
    }
}
