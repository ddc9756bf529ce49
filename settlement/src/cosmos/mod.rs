//! The Cosmos chain backend: a settlement batch becomes chunk transactions on a Cosmos SDK
//! chain, signed by the settler's secp256k1 key.
//!
//! - Each tenant has granted the settler a `SendAuthorization` (authz, see
//!   [`ChainClient::grant_send`]); each `Payment` record becomes a `MsgSend` from the tenant to
//!   the provider, executed by the settler through `MsgExec` (at most 99 sends per `MsgExec`,
//!   several `MsgExec` per transaction). Fees are the settler's.
//! - A batch whose payments do not fit one transaction under the block gas limit is split into
//!   chunk transactions with consecutive sequences. Each memo reads
//!   `lm:v1:<batch sequence>:<chunk>/<chunks>:<merkle root hex>`, chunk counted from 0 as in
//!   [`PreparedTx::chunk`] and [`AnchorRecord::tx_hashes`]. A batch without payments is anchored by
//!   one self-send of one unit of the fee denom carrying the memo.
//! - Gas comes from simulating each chunk signed with the real gas price, then ×1.3 + 5000;
//!   the fee is the gas limit × the gas price.
//! - [`Anchor::prepare`] signs every chunk, so the journal stores the final bytes before
//!   anything is broadcast; [`Anchor::submit`] sends those bytes (a node that already has them
//!   counts as success); [`Anchor::confirm`] looks them up by hash.
//!
//! Not here: choosing when to settle, retrying forever (the journal does), or preparing a batch
//! while the previous one is unconfirmed (sequences are read from the chain, so the journal must
//! finish batch N before it prepares N + 1).

mod client;
mod error;

pub use client::{
    gas_with_margin, msg_send, send_allowance_in, tx_hash, AccountInfo, Broadcast, ChainClient,
    ChainConfig, SendAllowance, SignedTx, TxOutcome,
};
pub use cosmrs::crypto::secp256k1::SigningKey;
pub use error::{parse_rejection, parse_sequence_mismatch, ChainError};
/// k-of-n transactions of the chain's own multisig (not yet used by [`Cosmos`]: build them with
/// this module, simulate with [`ChainClient::simulate`], send with [`ChainClient::broadcast`]).
pub use leasemesh_cosmos::multisig;

use std::collections::BTreeMap;
use std::time::Duration;

use cosmrs::Any;
use leasemesh_protocol::{Anchor as AnchorRecord, SettlementBatch, SettlementRecord, Signed};

use crate::anchor::{Anchor, AnchorError, Confirmation, PreparedAnchor, PreparedTx};
use error::CODE_WRONG_SEQUENCE;

/// Longest memo a transaction may carry on the chain.
pub const MAX_MEMO_LEN: usize = 256;

/// Tuning of the Cosmos backend; [`CosmosConfig::new`] gives values measured on Injective.
#[derive(Debug, Clone)]
pub struct CosmosConfig {
    pub chain: ChainConfig,
    /// `MsgSend`s in one `MsgExec` (the chain fails to decode 100).
    pub max_sends_per_exec: usize,
    /// Upper bound of `MsgSend`s in one transaction; the block gas limit usually binds first.
    pub max_sends_per_tx: usize,
    /// Block gas limit; `None` reads it from the chain's consensus parameters.
    pub block_gas_limit: Option<u64>,
    /// First guess of the gas of one send through `MsgExec` (measured ~38k), to size chunks
    /// before simulating them.
    pub gas_per_send_estimate: u64,
    /// First guess of a transaction's fixed gas (signature, fee, memo).
    pub tx_gas_overhead_estimate: u64,
    /// How long [`Anchor::confirm`] waits for the chunks before answering `Pending`.
    pub confirm_wait: Duration,
    /// Attempts for a request that finds the node unavailable, with doubling backoff.
    pub attempts: u32,
    pub first_backoff: Duration,
}

impl CosmosConfig {
    pub fn new(chain: ChainConfig) -> CosmosConfig {
        CosmosConfig {
            chain,
            max_sends_per_exec: 99,
            max_sends_per_tx: 1_000,
            block_gas_limit: None,
            gas_per_send_estimate: 40_000,
            tx_gas_overhead_estimate: 120_000,
            confirm_wait: Duration::from_secs(5),
            attempts: 3,
            first_backoff: Duration::from_millis(200),
        }
    }
}

/// One transfer of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Transfer {
    from: String,
    to: String,
    denom: String,
    amount: u128,
}

/// The settlement backend on a Cosmos SDK chain.
pub struct Cosmos {
    client: ChainClient,
    key: SigningKey,
    address: String,
    cfg: CosmosConfig,
}

impl std::fmt::Debug for Cosmos {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cosmos").field("address", &self.address).field("cfg", &self.cfg).finish()
    }
}

impl Cosmos {
    /// A backend that settles as the holder of `settler_key`.
    pub fn new(cfg: CosmosConfig, settler_key: SigningKey) -> Result<Cosmos, ChainError> {
        let client = ChainClient::new(cfg.chain.clone())?;
        let address = client.address_of(&settler_key)?;
        Ok(Cosmos { client, key: settler_key, address, cfg })
    }

    /// The settler's address: the grantee tenants grant to, and the fee payer.
    pub fn address(&self) -> &str {
        &self.address
    }

    pub fn client(&self) -> &ChainClient {
        &self.client
    }

    pub fn config(&self) -> &CosmosConfig {
        &self.cfg
    }

    /// Runs `op` again while the node is unavailable, with doubling backoff.
    async fn retry<T, F, Fut>(&self, mut op: F) -> Result<T, ChainError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, ChainError>>,
    {
        let mut backoff = self.cfg.first_backoff;
        let mut attempt = 1;
        loop {
            match op().await {
                Err(ChainError::Unavailable { .. }) | Err(ChainError::Rpc(_))
                    if attempt < self.cfg.attempts =>
                {
                    tracing::debug!(attempt, ?backoff, "chain unavailable, retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = backoff.saturating_mul(2);
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    fn transfers(&self, batch: &SettlementBatch) -> Result<Vec<Transfer>, AnchorError> {
        let prefix = &self.cfg.chain.account_prefix;
        let check = |what: &str, addr: &str| -> Result<(), AnchorError> {
            match addr.parse::<cosmrs::AccountId>() {
                Ok(id) if id.prefix() == prefix => Ok(()),
                Ok(id) => Err(AnchorError::Invalid(format!(
                    "{what} address {addr} has prefix {}, this chain uses {prefix}",
                    id.prefix()
                ))),
                Err(e) => Err(AnchorError::Invalid(format!("{what} address {addr:?}: {e}"))),
            }
        };
        let mut out = Vec::new();
        for record in &batch.records {
            if let SettlementRecord::Payment { tenant_address, provider_address, denom, amount } =
                record
            {
                if *amount == 0 {
                    continue;
                }
                check("tenant", tenant_address)?;
                check("provider", provider_address)?;
                if denom.parse::<cosmrs::Denom>().is_err() {
                    return Err(AnchorError::Invalid(format!(
                        "payment denom {denom:?} is invalid"
                    )));
                }
                out.push(Transfer {
                    from: tenant_address.clone(),
                    to: provider_address.clone(),
                    denom: denom.clone(),
                    amount: *amount,
                });
            }
        }
        Ok(out)
    }

    /// Refuses a batch that the chain would revert (after charging the fee): a tenant without
    /// a grant, with a grant below what it owes, or without the coins.
    async fn check_funds(&self, transfers: &[Transfer]) -> Result<(), AnchorError> {
        let mut owed: BTreeMap<(&str, &str), u128> = BTreeMap::new();
        for t in transfers {
            let e = owed.entry((t.from.as_str(), t.denom.as_str())).or_default();
            *e = e.checked_add(t.amount).ok_or_else(|| {
                AnchorError::Invalid(format!("tenant {} owes more than u128 {}", t.from, t.denom))
            })?;
        }
        let mut grants: BTreeMap<&str, Option<Vec<(String, u128)>>> = BTreeMap::new();
        for (&(tenant, denom), &amount) in &owed {
            if !grants.contains_key(tenant) {
                let g = self.retry(|| self.client.send_grant(tenant, &self.address)).await?;
                grants.insert(tenant, g);
            }
            let limit = grants
                .get(tenant)
                .and_then(|g| g.as_ref())
                .and_then(|g| g.iter().find(|(d, _)| d == denom).map(|(_, a)| *a));
            match limit {
                None => {
                    return Err(AnchorError::Invalid(format!(
                        "tenant {tenant} has not granted the settler {} a send of {denom}",
                        self.address
                    )))
                }
                Some(l) if l < amount => {
                    return Err(AnchorError::Invalid(format!(
                        "tenant {tenant} granted {l}{denom}, the batch owes {amount}{denom}"
                    )))
                }
                Some(_) => {}
            }
            let balance = self.retry(|| self.client.balance(tenant, denom)).await?;
            if balance < amount {
                return Err(AnchorError::Invalid(format!(
                    "tenant {tenant} holds {balance}{denom}, the batch owes {amount}{denom}"
                )));
            }
        }
        Ok(())
    }

    fn chunk_msgs(&self, chunk: &[Transfer]) -> Result<Vec<Any>, ChainError> {
        let mut msgs = Vec::new();
        for group in chunk.chunks(self.cfg.max_sends_per_exec.max(1)) {
            let sends = group
                .iter()
                .map(|t| msg_send(&t.from, &t.to, &t.denom, t.amount))
                .collect::<Result<Vec<_>, _>>()?;
            msgs.push(leasemesh_cosmos::sign::msg_exec(&self.address, sends)?);
        }
        Ok(msgs)
    }

    async fn gas_limit(&self) -> Result<u64, ChainError> {
        if let Some(l) = self.cfg.block_gas_limit {
            return Ok(l);
        }
        Ok(self.retry(|| self.client.block_gas_limit()).await?.unwrap_or(10_000_000))
    }
}

use leasemesh_cosmos::rpc::CODE_UNAUTHORIZED;

/// Right after a restart, until it commits a block, the node checks transactions at height 0
/// and so verifies signatures with account number 0: every other account's transaction fails
/// with code 4 "... verify account number (0) ...". Nothing was accepted; the same bytes pass
/// once the node has committed a block, so this is a wait, not a refusal.
fn is_restart_artifact(code: u32, log: &str) -> bool {
    code == CODE_UNAUTHORIZED && log.contains("account number (0)")
}

/// `lm:v1:<seq>:<chunk>/<chunks>:<root hex>`.
pub fn memo(batch_sequence: u64, chunk: usize, chunks: usize, root_hex: &str) -> String {
    format!("lm:v1:{batch_sequence}:{chunk}/{chunks}:{root_hex}")
}

/// Splits `n` items into the fewest chunks of at most `per_chunk`, sizes differing by at most one.
fn split(n: usize, per_chunk: usize) -> Vec<std::ops::Range<usize>> {
    let per_chunk = per_chunk.max(1);
    let chunks = n.div_ceil(per_chunk).max(1);
    let (base, extra) = (n / chunks, n % chunks);
    let mut out = Vec::with_capacity(chunks);
    let mut start = 0;
    for i in 0..chunks {
        let len = base + usize::from(i < extra);
        out.push(start..start + len);
        start += len;
    }
    out
}

impl Anchor for Cosmos {
    async fn prepare(
        &mut self,
        batch: &Signed<SettlementBatch>,
    ) -> Result<PreparedAnchor, AnchorError> {
        let body = &batch.body;
        let root = body.merkle_root.to_hex();
        let transfers = self.transfers(body)?;
        self.check_funds(&transfers).await?;
        let account =
            self.retry(|| self.client.account(&self.address)).await?.ok_or_else(|| {
                AnchorError::Invalid(format!(
                    "settler account {} does not exist on chain",
                    self.address
                ))
            })?;
        let block_gas = self.gas_limit().await?;
        // A batch without payments still anchors its root: one self-send of one unit.
        let transfers = if transfers.is_empty() {
            vec![Transfer {
                from: self.address.clone(),
                to: self.address.clone(),
                denom: self.cfg.chain.fee_denom.clone(),
                amount: 1,
            }]
        } else {
            transfers
        };
        let anchor_only = transfers.len() == 1 && transfers[0].from == self.address;

        let usable = block_gas.saturating_sub(5_000).saturating_mul(10) / 13;
        let mut per_tx = (usable.saturating_sub(self.cfg.tx_gas_overhead_estimate)
            / self.cfg.gas_per_send_estimate.max(1)) as usize;
        per_tx = per_tx.clamp(1, self.cfg.max_sends_per_tx.max(1));

        for _attempt in 0..6 {
            let ranges = split(transfers.len(), per_tx);
            let chunks = ranges.len();
            let mut planned = Vec::with_capacity(chunks);
            let mut worst = 0u64;
            for (k, range) in ranges.iter().enumerate() {
                let chunk = &transfers[range.clone()];
                let memo = memo(body.sequence, k, chunks, &root);
                if memo.len() > MAX_MEMO_LEN {
                    return Err(AnchorError::Invalid(format!("memo {memo} is too long")));
                }
                let msgs = if anchor_only {
                    vec![msg_send(&self.address, &self.address, &chunk[0].denom, 1)?]
                } else {
                    self.chunk_msgs(chunk)?
                };
                let guess = (chunk.len() as u64)
                    .saturating_mul(self.cfg.gas_per_send_estimate)
                    .saturating_add(self.cfg.tx_gas_overhead_estimate)
                    .min(block_gas);
                // Simulation checks the sequence, so every chunk is simulated at the current one.
                let probe = self.client.sign(
                    &self.key,
                    account.number,
                    account.sequence,
                    msgs.clone(),
                    &memo,
                    guess,
                )?;
                let used = self.retry(|| self.client.simulate(&probe.bytes)).await?;
                let limit = gas_with_margin(used);
                worst = worst.max(limit);
                planned.push((msgs, memo, limit));
            }
            if worst > block_gas {
                if per_tx == 1 {
                    return Err(AnchorError::Invalid(format!(
                        "one transfer needs {worst} gas, over the block limit {block_gas}"
                    )));
                }
                // Shrink in proportion, with 5% to spare, and plan again.
                let scaled = (per_tx as u128 * u128::from(block_gas) * 95 / 100 / u128::from(worst))
                    as usize;
                per_tx = scaled.clamp(1, per_tx - 1);
                continue;
            }
            let mut txs = Vec::with_capacity(chunks);
            for (k, (msgs, memo, limit)) in planned.into_iter().enumerate() {
                let sequence = account.sequence + k as u64;
                let signed =
                    self.client.sign(&self.key, account.number, sequence, msgs, &memo, limit)?;
                txs.push(PreparedTx { chunk: k as u32, bytes: signed.bytes, hash: signed.hash });
            }
            tracing::info!(
                batch = body.sequence,
                transfers = transfers.len(),
                chunks,
                first_sequence = account.sequence,
                "settlement batch prepared"
            );
            return Ok(PreparedAnchor { batch_sequence: body.sequence, txs });
        }
        Err(AnchorError::Invalid(
            "could not fit the batch's chunks under the block gas limit".into(),
        ))
    }

    async fn submit(&mut self, prepared: &PreparedAnchor) -> Result<(), AnchorError> {
        for tx in &prepared.txs {
            match self.retry(|| self.client.broadcast(&tx.bytes)).await {
                Ok(Broadcast::Accepted) => {
                    tracing::debug!(chunk = tx.chunk, hash = %tx.hash, "chunk broadcast")
                }
                Ok(Broadcast::AlreadyKnown) => {
                    tracing::debug!(chunk = tx.chunk, hash = %tx.hash, "chunk already known")
                }
                Err(ChainError::Rejected { code, log }) if code == CODE_WRONG_SEQUENCE => {
                    match parse_sequence_mismatch(&log) {
                        // The chain is past this sequence: this chunk (or something else) used
                        // it already. `confirm` finds out which.
                        Some((expected, got)) if expected > got => {
                            tracing::debug!(chunk = tx.chunk, expected, got, "chunk sequence used")
                        }
                        _ => return Err(AnchorError::Rejected { code, log }),
                    }
                }
                Err(ChainError::Rejected { code, log }) if is_restart_artifact(code, &log) => {
                    return Err(AnchorError::Unavailable(format!(
                        "the node has not committed a block since it restarted: {log}"
                    )))
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    async fn confirm(&mut self, prepared: &PreparedAnchor) -> Result<Confirmation, AnchorError> {
        let deadline = tokio::time::Instant::now() + self.cfg.confirm_wait;
        let mut found = Vec::with_capacity(prepared.txs.len());
        for tx in &prepared.txs {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let outcome = self.retry(|| self.client.wait_tx(&tx.hash, left)).await?;
            match outcome {
                Some(out) => found.push(out),
                None => {
                    let verdict = self.unfound(prepared, tx).await?;
                    let Confirmation::Rejected { code, log } = verdict else {
                        return Ok(verdict);
                    };
                    // Chunks carry consecutive sequences, so a chunk after the lost one may
                    // still have landed: look at every one before saying what was paid.
                    let mut landed: Vec<String> =
                        found.iter().filter(|o| o.code == 0).map(|o| o.hash.clone()).collect();
                    for later in prepared.txs.iter().filter(|t| t.chunk > tx.chunk) {
                        let wait = Duration::from_secs(1);
                        if let Some(o) =
                            self.retry(|| self.client.wait_tx(&later.hash, wait)).await?
                        {
                            if o.code == 0 {
                                landed.push(o.hash);
                            }
                        }
                    }
                    return Ok(refusal(landed, code, log));
                }
            }
        }
        if let Some((k, bad)) = found.iter().enumerate().find(|(_, o)| o.code != 0) {
            let landed: Vec<String> =
                found.iter().filter(|o| o.code == 0).map(|o| o.hash.clone()).collect();
            tracing::error!(chunk = k, code = bad.code, log = %bad.log, ?landed, "chunk reverted");
            let log = format!("chunk {k} ({}) reverted: {}", bad.hash, bad.log);
            return Ok(refusal(landed, bad.code, log));
        }
        Ok(Confirmation::Final(AnchorRecord {
            chain_id: self.cfg.chain.chain_id.clone(),
            tx_hashes: found.iter().map(|o| o.hash.clone()).collect(),
            height: found.iter().map(|o| o.height).max().unwrap_or_default(),
        }))
    }
}

/// A refused chunk: `Rejected` only if no other chunk of the batch was paid; otherwise the
/// journal must know which chunks landed, or it would pay them again in the next batch.
fn refusal(landed: Vec<String>, code: u32, log: String) -> Confirmation {
    if landed.is_empty() {
        Confirmation::Rejected { code, log }
    } else {
        Confirmation::PartlyApplied { final_txs: landed, code, log }
    }
}

impl Cosmos {
    /// A chunk is not in a block yet. If the settler's sequence has moved past the chunk's,
    /// it never will be: another transaction took that sequence.
    async fn unfound(
        &self,
        prepared: &PreparedAnchor,
        tx: &PreparedTx,
    ) -> Result<Confirmation, AnchorError> {
        let signed = leasemesh_cosmos::tx::summarize(&tx.bytes).map_err(|e| {
            AnchorError::Store(format!("stored chunk {} does not decode: {e}", tx.chunk))
        })?;
        let Some(tx_sequence) = signed.sequences.first().copied() else {
            return Err(AnchorError::Store(format!("stored chunk {} has no signer", tx.chunk)));
        };
        let Some(account) = self.retry(|| self.client.account(&self.address)).await? else {
            return Ok(Confirmation::Pending);
        };
        if account.sequence <= tx_sequence {
            return Ok(Confirmation::Pending);
        }
        // The indexer may trail the block by a moment: look once more before giving up.
        if self.retry(|| self.client.wait_tx(&tx.hash, Duration::from_secs(2))).await?.is_some() {
            return Ok(Confirmation::Pending);
        }
        Ok(Confirmation::Rejected {
            code: CODE_WRONG_SEQUENCE,
            log: format!(
                "batch {} chunk {} ({}) never landed: the settler's sequence {} was used by another \
                 transaction",
                prepared.batch_sequence, tx.chunk, tx.hash, tx_sequence
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_after_a_landed_chunk_is_partly_applied_not_rejected() {
        assert_eq!(
            refusal(vec![], 5, "insufficient funds".into()),
            Confirmation::Rejected { code: 5, log: "insufficient funds".into() }
        );
        assert_eq!(
            refusal(vec!["AB".into()], 5, "chunk 1 reverted".into()),
            Confirmation::PartlyApplied {
                final_txs: vec!["AB".into()],
                code: 5,
                log: "chunk 1 reverted".into()
            }
        );
    }

    #[test]
    fn a_fresh_restart_is_a_wait_not_a_refusal() {
        let log = "signature verification failed; please verify account number (0) and chain-id \
                   (leasemesh-devnet-1): (unable to verify single signer signature): unauthorized";
        assert!(is_restart_artifact(4, log));
        assert!(!is_restart_artifact(4, "signature verification failed; account number (12)"));
        assert!(!is_restart_artifact(5, log));
    }

    #[test]
    fn split_is_balanced_and_covers_everything() {
        assert_eq!(split(1000, 189).len(), 6);
        let r = split(1000, 189);
        assert_eq!(r.first().map(|r| r.start), Some(0));
        assert_eq!(r.last().map(|r| r.end), Some(1000));
        assert!(r.windows(2).all(|w| w[0].end == w[1].start));
        assert!(r.iter().all(|c| c.len() == 166 || c.len() == 167));
        assert_eq!(split(0, 10), vec![0..0]);
        assert_eq!(split(5, 10), vec![0..5]);
    }

    #[test]
    fn memo_fits_the_chain_limit() {
        let m = memo(u64::MAX, 9_999, 10_000, &"ab".repeat(32));
        assert!(m.len() <= MAX_MEMO_LEN, "{}", m.len());
        assert_eq!(memo(3, 0, 2, "ff"), "lm:v1:3:0/2:ff");
    }
}
