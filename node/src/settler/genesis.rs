//! The network's genesis file: who the settlers are, how time is cut into epochs, and which
//! settlement backend anchors the batches. Every node of a mesh loads the same file; its
//! [`Genesis::digest`] is logged at start so operators can compare.
//!
//! TOML (or JSON when the file name ends in `.json`):
//!
//! ```toml
//! network = "leasemesh-local"
//! epoch_ms = 1000            # epoch length
//! settle_delay_ms = 300      # wait after an epoch closes for late bids
//! leader_timeout_ms = 2000   # silent leader → the next settler takes the epoch
//! settlers = ["<hex ed25519 key>", "..."]
//!
//! [settlement]
//! backend = "local"          # or "cosmos" (then [settlement.cosmos] holds the chain params)
//!
//! [[balances]]               # funded on the embedded ledger at first start
//! address = "tenant-1"
//! denom = "uakt"
//! amount = "1000000000"
//! key = "<hex ed25519 key>"  # optional: the key that may sign spend grants for this address
//!
//! [[grants]]                 # spend grants to the settlement settler, set at first start
//! tenant = "tenant-1"
//! denom = "uakt"
//! limit = "1000000000"
//! ```

use std::path::Path;

use leasemesh_protocol::codec::to_canonical;
use leasemesh_protocol::types::amount_serde;
use leasemesh_protocol::{Hash, PublicKey};
use serde::{Deserialize, Serialize};

/// Shortest epoch allowed: below this, gossip latency dominates and batches pile up.
pub const MIN_EPOCH_MS: u64 = 100;

/// The genesis of a mesh.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Genesis {
    /// Name of the network (shown in logs and `/v1/settler/status`).
    pub network: String,
    /// Length of an epoch in ms. An order belongs to the epoch in which its auction closes.
    pub epoch_ms: u64,
    /// How long after an epoch closes its leader waits before matching (late gossip).
    #[serde(default = "default_settle_delay")]
    pub settle_delay_ms: u64,
    /// How long the next settler waits for a silent leader before it takes the epoch.
    #[serde(default = "default_leader_timeout")]
    pub leader_timeout_ms: u64,
    /// The settlers, in fallback order. The first one also anchors settlement batches.
    pub settlers: Vec<PublicKey>,
    #[serde(default)]
    pub settlement: SettlementGenesis,
    /// Balances on the embedded ledger at first start.
    #[serde(default)]
    pub balances: Vec<GenesisBalance>,
    /// Spend grants to the settlement settler at first start.
    #[serde(default)]
    pub grants: Vec<GenesisGrant>,
}

fn default_settle_delay() -> u64 {
    300
}

fn default_leader_timeout() -> u64 {
    2_000
}

/// Which backend anchors settlement batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// The embedded ledger (sled, under the settlement settler's home).
    #[default]
    Local,
    /// A Cosmos SDK chain (`[settlement.cosmos]`).
    Cosmos,
}

/// `[settlement]` of the genesis.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SettlementGenesis {
    #[serde(default)]
    pub backend: Backend,
    /// Chain parameters for the Cosmos backend (rpc url, chain id, denom, gas price...), passed
    /// through to it.
    #[serde(default)]
    pub cosmos: Option<toml::Table>,
}

/// A funded account on the embedded ledger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenesisBalance {
    pub address: String,
    pub denom: String,
    #[serde(with = "amount_serde")]
    pub amount: u128,
    /// The key that may sign spend grants for this address.
    #[serde(default)]
    pub key: Option<PublicKey>,
}

/// A spend grant set at first start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenesisGrant {
    pub tenant: String,
    pub denom: String,
    #[serde(with = "amount_serde")]
    pub limit: u128,
}

/// The genesis could not be read or makes no sense.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GenesisError {
    #[error("cannot read the genesis file {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the genesis file {path} does not parse: {reason}")]
    Parse { path: String, reason: String },
    #[error("the genesis is invalid: {0}")]
    Invalid(String),
}

impl Genesis {
    /// Reads a genesis file: JSON if the name ends in `.json`, TOML otherwise.
    pub fn load(path: &Path) -> Result<Genesis, GenesisError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|source| GenesisError::Read { path: shown.clone(), source })?;
        let g: Genesis = if path.extension().is_some_and(|e| e == "json") {
            serde_json::from_str(&text)
                .map_err(|e| GenesisError::Parse { path: shown, reason: e.to_string() })?
        } else {
            toml::from_str(&text)
                .map_err(|e| GenesisError::Parse { path: shown, reason: e.to_string() })?
        };
        g.validate()?;
        Ok(g)
    }

    /// Checks what every node relies on.
    pub fn validate(&self) -> Result<(), GenesisError> {
        let bad = |s: String| Err(GenesisError::Invalid(s));
        if self.epoch_ms < MIN_EPOCH_MS {
            return bad(format!(
                "epoch_ms is {}, at least {MIN_EPOCH_MS} is needed",
                self.epoch_ms
            ));
        }
        if self.leader_timeout_ms == 0 {
            return bad("leader_timeout_ms must be above 0".into());
        }
        if self.settlers.is_empty() {
            return bad("settlers is empty: list at least one settler key".into());
        }
        let mut keys = self.settlers.clone();
        keys.sort();
        keys.dedup();
        if keys.len() != self.settlers.len() {
            return bad("a settler key is listed twice".into());
        }
        if self.settlement.backend == Backend::Cosmos && self.settlement.cosmos.is_none() {
            return bad("backend = \"cosmos\" needs a [settlement.cosmos] table".into());
        }
        Ok(())
    }

    /// A digest of the whole genesis: nodes of one mesh show the same.
    pub fn digest(&self) -> Hash {
        // toml::Table is not canonical-encodable by postcard; JSON of it is stable (sorted map).
        let cosmos = self
            .settlement
            .cosmos
            .as_ref()
            .map(|t| serde_json::to_string(t).unwrap_or_default())
            .unwrap_or_default();
        let body = (
            &self.network,
            self.epoch_ms,
            self.settle_delay_ms,
            self.leader_timeout_ms,
            &self.settlers,
            self.settlement.backend as u8,
            cosmos,
            self.balances
                .iter()
                .map(|b| (&b.address, &b.denom, b.amount, b.key))
                .collect::<Vec<_>>(),
            self.grants.iter().map(|g| (&g.tenant, &g.denom, g.limit)).collect::<Vec<_>>(),
        );
        Hash::domain("leasemesh/v1/genesis", &[&to_canonical(&body)])
    }

    /// The settler that anchors settlement batches (one writer to the backend).
    pub fn settlement_settler(&self) -> Option<&PublicKey> {
        self.settlers.first()
    }

    /// The genesis as TOML.
    pub fn to_toml(&self) -> Result<String, GenesisError> {
        toml::to_string(self).map_err(|e| GenesisError::Invalid(e.to_string()))
    }
}

/// `leasemesh-node genesis`: writes a genesis file every node of a mesh then loads.
#[derive(Debug, Clone, clap::Args)]
pub struct GenesisArgs {
    /// Where to write the file (TOML; JSON if the name ends in .json).
    #[arg(long)]
    pub out: std::path::PathBuf,
    /// Name of the network.
    #[arg(long, default_value = "leasemesh-local")]
    pub network: String,
    /// A settler's node key in hex (`node_key` of `leasemesh-node init`), in fallback order;
    /// the first also settles. Repeatable.
    #[arg(long = "settler", required = true)]
    pub settlers: Vec<String>,
    #[arg(long, default_value_t = 1000)]
    pub epoch_ms: u64,
    #[arg(long, default_value_t = 300)]
    pub settle_delay_ms: u64,
    #[arg(long, default_value_t = 2000)]
    pub leader_timeout_ms: u64,
    /// A funded account on the embedded ledger: ADDRESS=AMOUNTDENOM[@KEYHEX] (for example
    /// tenant-1=1000000000uakt). Repeatable.
    #[arg(long = "fund")]
    pub fund: Vec<String>,
    /// A spend grant to the settlement settler: ADDRESS=LIMITDENOM. Repeatable.
    #[arg(long = "grant")]
    pub grant: Vec<String>,
    /// Replace an existing file.
    #[arg(long)]
    pub force: bool,
}

/// Splits "1000uakt" into (1000, "uakt").
fn parse_coin(s: &str) -> Result<(u128, String), GenesisError> {
    let digits = s.chars().take_while(char::is_ascii_digit).count();
    let (amount, denom) = s.split_at(digits);
    let amount: u128 = amount
        .parse()
        .map_err(|_| GenesisError::Invalid(format!("{s:?}: expected AMOUNTDENOM")))?;
    if denom.is_empty() {
        return Err(GenesisError::Invalid(format!("{s:?}: the denom is missing")));
    }
    Ok((amount, denom.to_string()))
}

impl GenesisArgs {
    /// Builds the genesis from the flags.
    pub fn genesis(&self) -> Result<Genesis, GenesisError> {
        let settlers = self
            .settlers
            .iter()
            .map(|h| {
                PublicKey::from_hex(h.trim())
                    .map_err(|e| GenesisError::Invalid(format!("settler {h:?}: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut balances = Vec::new();
        for f in &self.fund {
            let (address, rest) = f.split_once('=').ok_or_else(|| {
                GenesisError::Invalid(format!("--fund {f:?}: expected ADDRESS=AMOUNTDENOM"))
            })?;
            let (coin, key) = match rest.split_once('@') {
                Some((c, k)) => (
                    c,
                    Some(
                        PublicKey::from_hex(k)
                            .map_err(|e| GenesisError::Invalid(format!("--fund {f:?}: {e}")))?,
                    ),
                ),
                None => (rest, None),
            };
            let (amount, denom) = parse_coin(coin)?;
            balances.push(GenesisBalance { address: address.into(), denom, amount, key });
        }
        let mut grants = Vec::new();
        for g in &self.grant {
            let (tenant, coin) = g.split_once('=').ok_or_else(|| {
                GenesisError::Invalid(format!("--grant {g:?}: expected ADDRESS=LIMITDENOM"))
            })?;
            let (limit, denom) = parse_coin(coin)?;
            grants.push(GenesisGrant { tenant: tenant.into(), denom, limit });
        }
        let g = Genesis {
            network: self.network.clone(),
            epoch_ms: self.epoch_ms,
            settle_delay_ms: self.settle_delay_ms,
            leader_timeout_ms: self.leader_timeout_ms,
            settlers,
            settlement: SettlementGenesis::default(),
            balances,
            grants,
        };
        g.validate()?;
        Ok(g)
    }

    /// Writes the file and returns the genesis.
    pub fn write(&self) -> Result<Genesis, GenesisError> {
        let g = self.genesis()?;
        let shown = self.out.display().to_string();
        if self.out.exists() && !self.force {
            return Err(GenesisError::Invalid(format!(
                "{shown} exists; pass --force to replace it"
            )));
        }
        let text = if self.out.extension().is_some_and(|e| e == "json") {
            serde_json::to_string_pretty(&g).map_err(|e| GenesisError::Invalid(e.to_string()))?
        } else {
            g.to_toml()?
        };
        std::fs::write(&self.out, text)
            .map_err(|source| GenesisError::Read { path: shown, source })?;
        Ok(g)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use leasemesh_protocol::Keypair;

    fn sample() -> Genesis {
        Genesis {
            network: "t".into(),
            epoch_ms: 1000,
            settle_delay_ms: 300,
            leader_timeout_ms: 2000,
            settlers: vec![
                Keypair::from_seed_label("s1").public(),
                Keypair::from_seed_label("s2").public(),
            ],
            settlement: SettlementGenesis::default(),
            balances: vec![GenesisBalance {
                address: "tenant-1".into(),
                denom: "uakt".into(),
                amount: 1 << 100,
                key: Some(Keypair::from_seed_label("t").public()),
            }],
            grants: vec![],
        }
    }

    #[test]
    fn toml_and_json_round_trip_and_digest_is_stable() {
        let g = sample();
        let dir = tempfile::tempdir().unwrap();
        let t = dir.path().join("genesis.toml");
        std::fs::write(&t, g.to_toml().unwrap()).unwrap();
        let j = dir.path().join("genesis.json");
        std::fs::write(&j, serde_json::to_string(&g).unwrap()).unwrap();
        assert_eq!(Genesis::load(&t).unwrap(), g);
        assert_eq!(Genesis::load(&j).unwrap(), g);
        assert_eq!(Genesis::load(&t).unwrap().digest(), g.digest());
        let mut other = g.clone();
        other.epoch_ms = 2000;
        assert_ne!(other.digest(), g.digest());
    }

    #[test]
    fn the_cli_writes_a_genesis_that_loads() {
        let dir = tempfile::tempdir().unwrap();
        let key = Keypair::from_seed_label("s1").public();
        let args = GenesisArgs {
            out: dir.path().join("g.toml"),
            network: "n".into(),
            settlers: vec![key.to_hex()],
            epoch_ms: 500,
            settle_delay_ms: 200,
            leader_timeout_ms: 1000,
            fund: vec![format!("tenant-1=1000uakt@{}", key.to_hex()), "tenant-2=5inj".into()],
            grant: vec!["tenant-1=700uakt".into()],
            force: false,
        };
        let g = args.write().unwrap();
        assert_eq!(Genesis::load(&args.out).unwrap(), g);
        assert_eq!(g.balances[0].amount, 1000);
        assert_eq!(g.balances[0].key, Some(key));
        assert_eq!(g.balances[1].denom, "inj");
        assert_eq!(g.grants[0].limit, 700);
        assert!(args.write().is_err(), "no silent overwrite");
        let mut bad = args.clone();
        bad.fund = vec!["tenant-1=uakt".into()];
        assert!(bad.genesis().is_err());
    }

    #[test]
    fn nonsense_is_refused_with_a_reason() {
        let mut g = sample();
        g.settlers.clear();
        assert!(g.validate().unwrap_err().to_string().contains("settlers is empty"));
        let mut g = sample();
        g.settlers.push(g.settlers[0]);
        assert!(g.validate().is_err());
        let mut g = sample();
        g.epoch_ms = 5;
        assert!(g.validate().is_err());
        let mut g = sample();
        g.settlement.backend = Backend::Cosmos;
        assert!(g.validate().is_err());
        assert!(toml::from_str::<Genesis>(
            "network = \"x\"\nepoch_ms = 1000\nsettlers = []\nbogus = 1\n"
        )
        .is_err());
    }
}
