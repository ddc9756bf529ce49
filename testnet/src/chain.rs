//! Settlement on the devnet: tenants grant the settler, batches of payments are settled through
//! the journal and the Cosmos backend, and the chain is read back. Shared by the
//! `settle-bench` and `settle-once` subcommands and the devnet tests.

use std::path::Path;
use std::time::{Duration, Instant};

use leasemesh_protocol::{merkle, Hash, Keypair, SettlementBatch, SettlementRecord, Signed};
use leasemesh_settlement::cosmos::{
    ChainClient, ChainConfig, ChainError, Cosmos, CosmosConfig, SigningKey,
};
use leasemesh_settlement::journal::{Journal, JournalError, RetryPolicy, SettleStep};
use leasemesh_settlement::samples;
use serde::Serialize;

use crate::devnet::{DevAccount, Devnet, DevnetConfig, DevnetError, DENOM};

/// Grant transactions sent at once by [`grant_all`].
pub const GRANTS_IN_FLIGHT: usize = 200;

/// Why a chain settlement run failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ChainRunError {
    #[error(transparent)]
    Devnet(#[from] DevnetError),
    #[error(transparent)]
    Chain(#[from] ChainError),
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error("{0}")]
    Other(String),
}

/// The chain settings of a running devnet.
pub fn chain_config(devnet: &Devnet) -> ChainConfig {
    ChainConfig::injective(devnet.rpc_url.clone(), devnet.chain_id.clone())
}

/// A Cosmos backend on `chain` that settles as `settler`.
pub fn backend(chain: ChainConfig, settler: &DevAccount) -> Result<Cosmos, ChainRunError> {
    Ok(Cosmos::new(CosmosConfig::new(chain), settler.signing_key()?)?)
}

/// Every tenant grants the settler a `SendAuthorization` of `limit` inj, all at once (one
/// transaction per tenant, in the same few blocks).
pub async fn grant_all(
    client: &ChainClient,
    tenants: &[DevAccount],
    settler_address: &str,
    limit: u128,
) -> Result<(), ChainRunError> {
    // The node's mempool lane holds 500 txs: keep well below it.
    let permits = std::sync::Arc::new(tokio::sync::Semaphore::new(GRANTS_IN_FLIGHT));
    let mut tasks = tokio::task::JoinSet::new();
    for tenant in tenants {
        let key: SigningKey = tenant.signing_key()?;
        let client = client.clone();
        let settler = settler_address.to_string();
        let permits = permits.clone();
        tasks.spawn(async move {
            let _permit = permits.acquire_owned().await;
            client.grant_send(&key, &settler, &[(DENOM.to_string(), limit)]).await
        });
    }
    while let Some(joined) = tasks.join_next().await {
        joined.map_err(|e| ChainRunError::Other(format!("grant task: {e}")))??;
    }
    Ok(())
}

/// A batch of `count` payments, pair `i` from tenant `i mod T` to provider `(i / T) mod P`,
/// so that `T × P` payments cover every pair once; amounts are deterministic in `seed`.
pub fn payment_batch(
    settler: &Keypair,
    sequence: u64,
    prev_batch: Hash,
    tenants: &[String],
    providers: &[String],
    count: usize,
    seed: u64,
) -> Signed<SettlementBatch> {
    let mut records = Vec::with_capacity(count);
    for i in 0..count {
        let tenant = &tenants[i % tenants.len().max(1)];
        let provider = &providers[(i / tenants.len().max(1)) % providers.len().max(1)];
        let h = Hash::domain(
            "leasemesh/testnet/payment",
            &[&seed.to_be_bytes(), &(i as u64).to_be_bytes()],
        );
        let mut eight = [0u8; 8];
        eight.copy_from_slice(&h.as_bytes()[..8]);
        let amount = 1_000_000 + u128::from(u64::from_be_bytes(eight) % 1_000_000_000_000);
        records.push(SettlementRecord::Payment {
            tenant_address: tenant.clone(),
            provider_address: provider.clone(),
            denom: DENOM.into(),
            amount,
        });
    }
    records.sort();
    records.dedup_by(|a, b| match (a, b) {
        (
            SettlementRecord::Payment {
                tenant_address: t1, provider_address: p1, denom: d1, ..
            },
            SettlementRecord::Payment {
                tenant_address: t2, provider_address: p2, denom: d2, ..
            },
        ) => t1 == t2 && p1 == p2 && d1 == d2,
        _ => false,
    });
    let body = SettlementBatch {
        version: leasemesh_protocol::v(),
        settler: settler.public(),
        sequence,
        prev_batch,
        created_at_ms: 1_800_000_000_000 + sequence,
        merkle_root: merkle::root(&records),
        records,
    };
    Signed::sign(body, settler)
}

/// Settles `batch` through a journal in `journal_dir`; `crash_after` aborts the process right
/// after that step (the crash test), as `kill -9` would.
pub async fn settle_with_journal(
    journal_dir: &Path,
    backend: &mut Cosmos,
    batch: Option<Signed<SettlementBatch>>,
    crash_after: Option<SettleStep>,
) -> Result<Vec<leasemesh_protocol::Anchor>, ChainRunError> {
    let mut journal = Journal::open(journal_dir)?;
    journal.set_retry_policy(RetryPolicy {
        first_backoff: Duration::from_millis(100),
        max_backoff: Duration::from_secs(2),
        max_waits: 60,
        resubmit_every: 5,
    });
    journal.set_step_hook(Box::new(move |s| {
        if Some(s) == crash_after {
            eprintln!("settle-once: aborting after {s:?}");
            std::process::abort();
        }
    }));
    let mut out = journal.resume(backend).await?;
    if let Some(batch) = batch {
        out.push(journal.settle(backend, batch).await?);
    }
    Ok(out)
}

/// One line of `settle-bench`.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    pub leases: usize,
    pub payments: usize,
    pub txs: usize,
    pub gas_per_lease: u64,
    pub leases_per_min: u64,
    pub settle_ms: u64,
    pub block_time_ms: u64,
}

/// Starts a devnet, lets `tenants` tenants grant the settler, builds the batch of a sample fleet
/// of `leases` leases over `providers` providers (real accrual and netting), settles it through
/// the journal and the Cosmos backend, and measures it.
pub async fn settle_bench(
    leases: usize,
    tenants: usize,
    providers: usize,
    block_time: Duration,
) -> Result<BenchReport, ChainRunError> {
    let devnet = Devnet::start(DevnetConfig {
        accounts: 1 + tenants + providers,
        block_time,
        ..DevnetConfig::default()
    })
    .await?;
    let settler = &devnet.accounts[0];
    let tenant_accounts = &devnet.accounts[1..=tenants];
    let provider_accounts = &devnet.accounts[1 + tenants..];
    let mut cosmos = backend(chain_config(&devnet), settler)?;
    grant_all(cosmos.client(), tenant_accounts, cosmos.address(), 1_000 * 10u128.pow(18)).await?;

    let fleet = samples::fleet_with(
        0xbe0c,
        tenant_accounts.iter().map(|a| a.address.clone()).collect(),
        provider_accounts.iter().map(|a| a.address.clone()).collect(),
        DENOM,
        leases,
    );
    let batch = fleet.signed_batch().map_err(|e| ChainRunError::Other(e.to_string()))?;
    let payments =
        batch.body.records.iter().filter(|r| matches!(r, SettlementRecord::Payment { .. })).count();
    let dir = tempfile::tempdir().map_err(|e| ChainRunError::Other(e.to_string()))?;
    let started = Instant::now();
    let anchors =
        settle_with_journal(&dir.path().join("journal"), &mut cosmos, Some(batch), None).await?;
    let settle = started.elapsed();
    let anchor = anchors.last().ok_or_else(|| ChainRunError::Other("no anchor".into()))?;
    let mut gas = 0u64;
    for hash in &anchor.tx_hashes {
        let tx = cosmos
            .client()
            .find_tx(hash)
            .await?
            .ok_or_else(|| ChainRunError::Other(format!("tx {hash} not found")))?;
        gas += tx.gas_used;
    }
    let leases_paid = fleet.leases.iter().filter(|l| l.timeline.running_at_ms.is_some()).count();
    Ok(BenchReport {
        leases: leases_paid,
        payments,
        txs: anchor.tx_hashes.len(),
        gas_per_lease: gas / leases_paid.max(1) as u64,
        leases_per_min: (leases_paid as u128 * 60_000 / settle.as_millis().max(1)) as u64,
        settle_ms: settle.as_millis() as u64,
        block_time_ms: block_time.as_millis() as u64,
    })
}

/// A devnet for a mesh that settles on it: account 0 is the settler, then the tenants, then the
/// providers. Tenants grant the settler through the light client once the mesh runs
/// ([`MeshChain::grant_and_bind`]).
#[derive(Debug)]
pub struct MeshChain {
    pub devnet: Devnet,
    pub settler: DevAccount,
    pub tenants: Vec<DevAccount>,
    pub providers: Vec<DevAccount>,
    pub client: ChainClient,
}

impl MeshChain {
    /// Starts the devnet and funds the accounts.
    pub async fn start(tenants: usize, providers: usize) -> Result<MeshChain, ChainRunError> {
        let devnet = Devnet::start(DevnetConfig {
            accounts: 1 + tenants + providers,
            ..DevnetConfig::default()
        })
        .await?;
        let settler = devnet.accounts[0].clone();
        let tenant_accounts = devnet.accounts[1..=tenants].to_vec();
        let provider_accounts = devnet.accounts[1 + tenants..].to_vec();
        let client = ChainClient::new(chain_config(&devnet))?;
        Ok(MeshChain {
            devnet,
            settler,
            tenants: tenant_accounts,
            providers: provider_accounts,
            client,
        })
    }

    /// What the mesh's genesis and settler need to settle here.
    pub fn spec(&self) -> crate::mesh::ChainSpec {
        crate::mesh::ChainSpec {
            rpc_url: self.devnet.rpc_url.clone(),
            chain_id: self.devnet.chain_id.clone(),
            settler_secret_hex: self.settler.secret_hex.clone(),
        }
    }

    /// What `leasemesh grant --chain-key` does, for tenant `i` signing orders with `key`: an
    /// authz grant of `limit` inj to the settler's chain account, sent by the tenant's chain
    /// key, then the ADR-036 binding of that account to `key`, posted to the settler. Blocking
    /// (the light client's HTTP).
    pub fn grant_and_bind(
        &self,
        settler: &leasemesh_client::NodeClient,
        i: usize,
        key: &Keypair,
        limit: u128,
    ) -> Result<serde_json::Value, ChainRunError> {
        use leasemesh_client::cosmos_grant::{grant_and_bind, ChainParams};
        let tenant = self
            .tenants
            .get(i)
            .ok_or_else(|| ChainRunError::Other(format!("no tenant account {i}")))?;
        let mut secret = [0u8; 32];
        hex::decode_to_slice(&tenant.secret_hex, &mut secret)
            .map_err(|e| ChainRunError::Other(format!("tenant secret: {e}")))?;
        let params =
            ChainParams::injective(self.devnet.rpc_url.clone(), self.devnet.chain_id.clone());
        let limit = leasemesh_protocol::Coin::new(DENOM, limit);
        grant_and_bind(settler, &params, &secret, key, &limit).map_err(|e| {
            ChainRunError::Other(format!("grant and bind for {}: {e}", tenant.address))
        })
    }

    /// `address`'s balance in the chain's denom.
    pub async fn balance(&self, address: &str) -> Result<u128, ChainRunError> {
        Ok(self.client.balance(address, DENOM).await?)
    }

    /// What `tenant` still lets the settler spend (0 when the grant is gone).
    pub async fn grant_left(&self, tenant: &str) -> Result<u128, ChainRunError> {
        let left = self.client.send_grant(tenant, &self.settler.address).await?;
        Ok(left.unwrap_or_default().into_iter().filter(|(d, _)| d == DENOM).map(|(_, a)| a).sum())
    }
}
