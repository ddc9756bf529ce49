//! A small client for a Cosmos SDK chain over CometBFT RPC only: ABCI queries (accounts,
//! balances, grants, simulation), `broadcast_tx_sync`, and transactions by hash.
//!
//! Everything goes through the one RPC URL, so a settler needs no gRPC endpoint.

use std::time::Duration;

use cosmrs::crypto::secp256k1::SigningKey;
use cosmrs::rpc::{Client as _, HttpClient};
use cosmrs::Any;
use leasemesh_cosmos::query::{self, AbciQuery};
use leasemesh_cosmos::sign::{msg_grant_send, sign_direct, TxParams, PROBE_GAS};
use leasemesh_cosmos::tx::summarize;

pub use leasemesh_cosmos::query::{AccountInfo, SendAllowance};
pub use leasemesh_cosmos::sign::{gas_with_margin, SignedTx};
pub use leasemesh_cosmos::tx::tx_hash;

use super::error::{is_already_known, parse_rejection, ChainError};

/// Where the chain is and what it charges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainConfig {
    /// CometBFT RPC, e.g. `http://127.0.0.1:26657`.
    pub rpc_url: String,
    pub chain_id: String,
    /// Bech32 prefix of account addresses (`inj`).
    pub account_prefix: String,
    /// Denom fees are paid in (`inj`).
    pub fee_denom: String,
    /// Price of one unit of gas in `fee_denom`; the node's minimum is the floor.
    pub gas_price: u128,
    /// Time limit of one RPC request.
    pub request_timeout: Duration,
    /// How often to look for a transaction while waiting for it.
    pub poll_interval: Duration,
}

impl ChainConfig {
    /// What every transaction on this chain carries besides its messages.
    pub fn tx_params(&self) -> TxParams {
        TxParams {
            chain_id: self.chain_id.clone(),
            fee_denom: self.fee_denom.clone(),
            gas_price: self.gas_price,
        }
    }

    /// Settings for an Injective chain (denom and prefix `inj`, minimum gas price 160000000inj).
    pub fn injective(rpc_url: impl Into<String>, chain_id: impl Into<String>) -> ChainConfig {
        ChainConfig {
            rpc_url: rpc_url.into(),
            chain_id: chain_id.into(),
            account_prefix: "inj".into(),
            fee_denom: "inj".into(),
            gas_price: 160_000_000,
            request_timeout: Duration::from_secs(10),
            poll_interval: Duration::from_millis(100),
        }
    }
}

/// What `broadcast_tx_sync` said about a transaction the node did not refuse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Broadcast {
    /// Entered the mempool now.
    Accepted,
    /// The node already had it (a rebroadcast of the same bytes).
    AlreadyKnown,
}

/// A transaction found in a block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxOutcome {
    pub hash: String,
    pub height: u64,
    /// 0 when it succeeded; otherwise the whole tx was reverted (the fee was still charged).
    pub code: u32,
    pub log: String,
    pub gas_wanted: u64,
    pub gas_used: u64,
    /// The transaction's memo, read back from the block.
    pub memo: String,
    /// The signer's sequence that the transaction used.
    pub sequence: u64,
}

/// A connection to one chain node.
#[derive(Debug, Clone)]
pub struct ChainClient {
    rpc: HttpClient,
    cfg: ChainConfig,
}

impl ChainClient {
    pub fn new(cfg: ChainConfig) -> Result<ChainClient, ChainError> {
        let url = cfg
            .rpc_url
            .parse()
            .map_err(|e| ChainError::Build(format!("bad RPC URL {}: {e}", cfg.rpc_url)))?;
        let rpc = HttpClient::builder(url)
            .timeout(cfg.request_timeout)
            .build()
            .map_err(|e| ChainError::Build(format!("RPC client for {}: {e}", cfg.rpc_url)))?;
        Ok(ChainClient { rpc, cfg })
    }

    pub fn config(&self) -> &ChainConfig {
        &self.cfg
    }

    /// The bech32 address of a key on this chain.
    pub fn address_of(&self, key: &SigningKey) -> Result<String, ChainError> {
        Ok(leasemesh_cosmos::sign::address_of(&key.public_key(), &self.cfg.account_prefix)?)
    }

    fn rpc_error(&self, e: cosmrs::rpc::Error) -> ChainError {
        use cosmrs::rpc::error::ErrorDetail;
        match e.detail() {
            // The node's own words: message, data and code.
            ErrorDetail::Response(sub) => ChainError::Rpc(sub.source.to_string()),
            _ => {
                // The error's `Display` appends a backtrace after a blank line.
                let full = e.to_string();
                let detail = full.split("\n\n").next().unwrap_or_default().trim().to_string();
                ChainError::Unavailable { url: self.cfg.rpc_url.clone(), detail }
            }
        }
    }

    /// Runs an ABCI query: the answer's value, or [`ChainError::Query`] when the app refused.
    async fn query(&self, q: AbciQuery) -> Result<Vec<u8>, ChainError> {
        let res = self
            .rpc
            .abci_query(Some(q.path.to_string()), q.data, None, false)
            .await
            .map_err(|e| self.rpc_error(e))?;
        if res.code.is_err() {
            return Err(ChainError::Query {
                path: q.path.into(),
                code: res.code.value(),
                log: res.log,
            });
        }
        Ok(res.value)
    }

    /// Latest block height.
    pub async fn latest_height(&self) -> Result<u64, ChainError> {
        let status = self.rpc.status().await.map_err(|e| self.rpc_error(e))?;
        Ok(status.sync_info.latest_block_height.value())
    }

    /// The consensus block gas limit, `None` when the chain sets none.
    pub async fn block_gas_limit(&self) -> Result<Option<u64>, ChainError> {
        let height = self.latest_height().await?;
        let h = cosmrs::tendermint::block::Height::try_from(height)
            .map_err(|e| ChainError::Decode { what: "height".into(), detail: e.to_string() })?;
        let params = self.rpc.consensus_params(h).await.map_err(|e| self.rpc_error(e))?;
        Ok(u64::try_from(params.consensus_params.block.max_gas).ok())
    }

    /// Account number and sequence, `None` for an account the chain has never seen.
    pub async fn account(&self, address: &str) -> Result<Option<AccountInfo>, ChainError> {
        match self.query(query::account_query(address)).await {
            Ok(v) => Ok(query::decode_account(&v)?),
            // NotFound (gRPC code 5 mapped to the SDK's key-not-found) for an unknown account.
            Err(ChainError::Query { log, .. }) if query::is_not_found(&log) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Balance of `address` in `denom`.
    pub async fn balance(&self, address: &str, denom: &str) -> Result<u128, ChainError> {
        Ok(query::decode_balance(&self.query(query::balance_query(address, denom)).await?)?)
    }

    /// The grants of `granter` to `grantee` for `MsgSend`; none when the chain has none.
    async fn send_grants(
        &self,
        granter: &str,
        grantee: &str,
    ) -> Result<Vec<cosmrs::proto::cosmos::authz::v1beta1::Grant>, ChainError> {
        match self.query(query::send_grants_query(granter, grantee)).await {
            Ok(v) => Ok(query::decode_grants(&v)?),
            Err(ChainError::Query { log, .. }) if query::is_not_found(&log) => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }

    /// What `granter` still lets `grantee` send through a `SendAuthorization`, as
    /// `(denom, amount)` pairs; `None` when there is no such grant (never given, expired, or
    /// used up: the chain deletes a grant whose limit reaches zero).
    pub async fn send_grant(
        &self,
        granter: &str,
        grantee: &str,
    ) -> Result<Option<Vec<(String, u128)>>, ChainError> {
        Ok(query::send_limit(&self.send_grants(granter, grantee).await?)?)
    }

    /// What `grantee` may still send from `granter` in `denom` (see [`send_allowance_in`]).
    pub async fn send_allowance(
        &self,
        granter: &str,
        grantee: &str,
        denom: &str,
    ) -> Result<SendAllowance, ChainError> {
        let grants = self.send_grants(granter, grantee).await?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        send_allowance_in(&grants, denom, now)
    }

    /// Gas the chain uses to run `tx_bytes`, by simulation. Sign the simulated transaction
    /// with the real gas price: with a zero fee the chain skips the fee deduction and reports
    /// too little gas.
    pub async fn simulate(&self, tx_bytes: &[u8]) -> Result<u64, ChainError> {
        match self.query(query::simulate_query(tx_bytes)).await {
            Ok(v) => Ok(query::decode_simulate(&v)?),
            Err(ChainError::Query { code, log, .. }) => Err(ChainError::Rejected { code, log }),
            Err(e) => Err(e),
        }
    }

    /// Signs a transaction of `msgs` by `key` with the given account number, sequence and gas
    /// limit; the fee is `gas_limit × gas_price`.
    pub fn sign(
        &self,
        key: &SigningKey,
        account_number: u64,
        sequence: u64,
        msgs: Vec<Any>,
        memo: &str,
        gas_limit: u64,
    ) -> Result<SignedTx, ChainError> {
        let params = self.cfg.tx_params();
        Ok(sign_direct(&params, key, account_number, sequence, msgs, memo, gas_limit)?)
    }

    /// Sends `tx_bytes` with `broadcast_tx_sync`. A refusal comes back as
    /// [`ChainError::Rejected`]; the same bytes sent again are [`Broadcast::AlreadyKnown`].
    pub async fn broadcast(&self, tx_bytes: &[u8]) -> Result<Broadcast, ChainError> {
        match self.rpc.broadcast_tx_sync(tx_bytes.to_vec()).await {
            Ok(res) if res.code.is_ok() => Ok(Broadcast::Accepted),
            Ok(res) => {
                let code = res.code.value();
                if is_already_known(Some(code), &res.log) {
                    Ok(Broadcast::AlreadyKnown)
                } else {
                    Err(ChainError::Rejected { code, log: res.log })
                }
            }
            Err(e) => match self.rpc_error(e) {
                ChainError::Rpc(text) => {
                    let parsed = parse_rejection(&text);
                    if is_already_known(parsed.as_ref().map(|p| p.0), &text) {
                        Ok(Broadcast::AlreadyKnown)
                    } else if let Some((code, log)) = parsed {
                        Err(ChainError::Rejected { code, log })
                    } else {
                        Err(ChainError::Rpc(text))
                    }
                }
                other => Err(other),
            },
        }
    }

    /// The transaction with this hash if it is in a block.
    pub async fn find_tx(&self, hash: &str) -> Result<Option<TxOutcome>, ChainError> {
        let h: cosmrs::tendermint::Hash =
            hash.parse().map_err(|e| ChainError::Build(format!("tx hash {hash}: {e}")))?;
        let res = match self.rpc.tx(h, false).await {
            Ok(r) => r,
            Err(e) => {
                return match self.rpc_error(e) {
                    ChainError::Rpc(text) if text.contains("not found") => Ok(None),
                    other => Err(other),
                }
            }
        };
        let tx = summarize(&res.tx).map_err(|e| ChainError::Decode {
            what: format!("tx {hash}"),
            detail: e.to_string(),
        })?;
        let sequence = tx.sequences.first().copied().unwrap_or_default();
        Ok(Some(TxOutcome {
            hash: hash.to_string(),
            height: res.height.value(),
            code: res.tx_result.code.value(),
            log: res.tx_result.log,
            gas_wanted: u64::try_from(res.tx_result.gas_wanted).unwrap_or_default(),
            gas_used: u64::try_from(res.tx_result.gas_used).unwrap_or_default(),
            memo: tx.memo,
            sequence,
        }))
    }

    /// Polls for the transaction until it is in a block or `wait` has passed.
    pub async fn wait_tx(
        &self,
        hash: &str,
        wait: Duration,
    ) -> Result<Option<TxOutcome>, ChainError> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(found) = self.find_tx(hash).await? {
                return Ok(Some(found));
            }
            if tokio::time::Instant::now() >= deadline {
                return Ok(None);
            }
            tokio::time::sleep(self.cfg.poll_interval).await;
        }
    }

    /// Signs, simulates and broadcasts a transaction of `msgs` from `key`, and waits until it
    /// is in a block. For one-off transactions (grants, funding), not for settlement.
    pub async fn send_and_wait(
        &self,
        key: &SigningKey,
        msgs: Vec<Any>,
        memo: &str,
        wait: Duration,
    ) -> Result<TxOutcome, ChainError> {
        let address = self.address_of(key)?;
        let account = self.account(&address).await?.ok_or_else(|| {
            ChainError::Build(format!("account {address} does not exist on chain (fund it first)"))
        })?;
        let probe =
            self.sign(key, account.number, account.sequence, msgs.clone(), memo, PROBE_GAS)?;
        let used = self.simulate(&probe.bytes).await?;
        let tx =
            self.sign(key, account.number, account.sequence, msgs, memo, gas_with_margin(used))?;
        self.broadcast(&tx.bytes).await?;
        match self.wait_tx(&tx.hash, wait).await? {
            Some(out) if out.code == 0 => Ok(out),
            Some(out) => Err(ChainError::Rejected { code: out.code, log: out.log }),
            None => Err(ChainError::Unavailable {
                url: self.cfg.rpc_url.clone(),
                detail: format!("tx {} not in a block after {wait:?}", tx.hash),
            }),
        }
    }

    /// The tenant `tenant_key` lets `grantee` (the settler) send up to `spend_limit` of its
    /// coins: an authz `MsgGrant` of a `SendAuthorization`, without expiry. A new grant
    /// replaces the old one.
    pub async fn grant_send(
        &self,
        tenant_key: &SigningKey,
        grantee: &str,
        spend_limit: &[(String, u128)],
    ) -> Result<TxOutcome, ChainError> {
        let granter = self.address_of(tenant_key)?;
        let msg = msg_grant_send(&granter, grantee, spend_limit)?;
        self.send_and_wait(tenant_key, vec![msg], "lm:v1:grant", Duration::from_secs(30)).await
    }

    /// Sends coins from `key` to `to` directly (used to fund accounts in tests and tools).
    pub async fn send(
        &self,
        key: &SigningKey,
        to: &str,
        denom: &str,
        amount: u128,
    ) -> Result<TxOutcome, ChainError> {
        let msg = msg_send(&self.address_of(key)?, to, denom, amount)?;
        self.send_and_wait(key, vec![msg], "", Duration::from_secs(30)).await
    }
}

/// Reads the allowance in `denom` from the grants the chain returned for (granter, grantee,
/// `MsgSend`); see [`leasemesh_cosmos::query::send_allowance_in`].
pub fn send_allowance_in(
    grants: &[cosmrs::proto::cosmos::authz::v1beta1::Grant],
    denom: &str,
    now_unix_s: i64,
) -> Result<SendAllowance, ChainError> {
    Ok(leasemesh_cosmos::query::send_allowance_in(grants, denom, now_unix_s)?)
}

/// A `MsgSend` as `Any`.
pub fn msg_send(from: &str, to: &str, denom: &str, amount: u128) -> Result<Any, ChainError> {
    Ok(leasemesh_cosmos::sign::msg_send(from, to, denom, amount)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tx_params_come_from_the_chain_config() {
        let cfg = ChainConfig::injective("http://127.0.0.1:9", "injective-777");
        let p = cfg.tx_params();
        assert_eq!(
            (p.chain_id.as_str(), p.fee_denom.as_str(), p.gas_price),
            ("injective-777", "inj", 160_000_000)
        );
    }
}
