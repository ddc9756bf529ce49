//! A small client for a Cosmos SDK chain over CometBFT RPC only: ABCI queries (accounts,
//! balances, grants, simulation), `broadcast_tx_sync`, and transactions by hash.
//!
//! Everything goes through the one RPC URL, so a settler needs no gRPC endpoint.

use std::time::Duration;

use cosmrs::crypto::secp256k1::SigningKey;
use cosmrs::proto::cosmos::auth::v1beta1::{
    BaseAccount, QueryAccountRequest, QueryAccountResponse,
};
use cosmrs::proto::cosmos::authz::v1beta1::{
    GenericAuthorization, Grant, MsgGrant, QueryGrantsRequest, QueryGrantsResponse,
};
use cosmrs::proto::cosmos::bank::v1beta1::{
    MsgSend, QueryBalanceRequest, QueryBalanceResponse, SendAuthorization,
};
use cosmrs::proto::cosmos::base::v1beta1::Coin as ProtoCoin;
use cosmrs::proto::cosmos::tx::v1beta1::{SimulateRequest, SimulateResponse};
use cosmrs::rpc::{Client as _, HttpClient};
use cosmrs::tendermint::crypto::default::Sha256;
use cosmrs::tendermint::crypto::Sha256 as _;
use cosmrs::tx::{Body, Fee, SignDoc, SignerInfo};
use cosmrs::Any;
use prost::Message;

use super::error::{is_already_known, parse_rejection, ChainError};

/// Type URL of the account wrapper Injective returns for every account, secp256k1 ones too.
const ETH_ACCOUNT_TYPE: &str = "/injective.types.v1beta1.EthAccount";
const BASE_ACCOUNT_TYPE: &str = "/cosmos.auth.v1beta1.BaseAccount";
const MSG_SEND_TYPE: &str = "/cosmos.bank.v1beta1.MsgSend";
const SEND_AUTHORIZATION_TYPE: &str = "/cosmos.bank.v1beta1.SendAuthorization";
const GENERIC_AUTHORIZATION_TYPE: &str = "/cosmos.authz.v1beta1.GenericAuthorization";

/// What a grantee may still send on a granter's behalf in one denom, through authz `MsgExec`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendAllowance {
    /// No live grant for `MsgSend`, or a `SendAuthorization` without this denom.
    None,
    /// A `SendAuthorization`'s remaining spend limit in this denom.
    Limited(u128),
    /// A `GenericAuthorization` for `MsgSend`: only the balance limits it.
    Unlimited,
}

/// Reads the allowance in `denom` from the grants the chain returned for (granter, grantee,
/// `MsgSend`). Grants whose expiration is at or before `now_unix_s` are skipped (the chain
/// prunes them lazily). A `SendAuthorization`'s `allow_list` is not checked: the settler pays
/// providers, and a list that leaves one out makes the chain refuse that payment.
pub fn send_allowance_in(
    grants: &[Grant],
    denom: &str,
    now_unix_s: i64,
) -> Result<SendAllowance, ChainError> {
    let mut out = SendAllowance::None;
    for grant in grants {
        if grant.expiration.as_ref().is_some_and(|t| t.seconds <= now_unix_s) {
            continue;
        }
        let Some(auth) = &grant.authorization else { continue };
        match auth.type_url.as_str() {
            SEND_AUTHORIZATION_TYPE => {
                let send = SendAuthorization::decode(auth.value.as_slice()).map_err(|e| {
                    ChainError::Decode { what: "SendAuthorization".into(), detail: e.to_string() }
                })?;
                for c in send.spend_limit.iter().filter(|c| c.denom == denom) {
                    let amount = parse_amount(&c.amount)?;
                    out = match out {
                        SendAllowance::Unlimited => SendAllowance::Unlimited,
                        SendAllowance::Limited(a) => SendAllowance::Limited(a.max(amount)),
                        SendAllowance::None => SendAllowance::Limited(amount),
                    };
                }
            }
            GENERIC_AUTHORIZATION_TYPE => {
                let generic = GenericAuthorization::decode(auth.value.as_slice()).map_err(|e| {
                    ChainError::Decode {
                        what: "GenericAuthorization".into(),
                        detail: e.to_string(),
                    }
                })?;
                if generic.msg == MSG_SEND_TYPE {
                    out = SendAllowance::Unlimited;
                }
            }
            _ => {}
        }
    }
    Ok(out)
}

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

/// Account number and next sequence of an account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccountInfo {
    pub number: u64,
    pub sequence: u64,
}

/// A signed transaction: the bytes to broadcast and their hash (upper-case hex SHA-256).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedTx {
    pub bytes: Vec<u8>,
    pub hash: String,
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
        key.public_key()
            .account_id(&self.cfg.account_prefix)
            .map(|a| a.to_string())
            .map_err(|e| ChainError::Build(format!("address of key: {e}")))
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

    async fn query<Req: Message, Resp: Message + Default>(
        &self,
        path: &str,
        req: &Req,
    ) -> Result<Resp, ChainError> {
        let res = self
            .rpc
            .abci_query(Some(path.to_string()), req.encode_to_vec(), None, false)
            .await
            .map_err(|e| self.rpc_error(e))?;
        if res.code.is_err() {
            return Err(ChainError::Query {
                path: path.into(),
                code: res.code.value(),
                log: res.log,
            });
        }
        Resp::decode(res.value.as_slice())
            .map_err(|e| ChainError::Decode { what: path.into(), detail: e.to_string() })
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
        let path = "/cosmos.auth.v1beta1.Query/Account";
        let req = QueryAccountRequest { address: address.into() };
        let resp: QueryAccountResponse = match self.query(path, &req).await {
            Ok(r) => r,
            // NotFound (gRPC code 5 mapped to the SDK's key-not-found) for an unknown account.
            Err(ChainError::Query { log, .. }) if log.contains("not found") => return Ok(None),
            Err(e) => return Err(e),
        };
        let Some(any) = resp.account else { return Ok(None) };
        let base = decode_base_account(&any)?;
        Ok(Some(AccountInfo { number: base.account_number, sequence: base.sequence }))
    }

    /// Balance of `address` in `denom`.
    pub async fn balance(&self, address: &str, denom: &str) -> Result<u128, ChainError> {
        let path = "/cosmos.bank.v1beta1.Query/Balance";
        let req = QueryBalanceRequest { address: address.into(), denom: denom.into() };
        let resp: QueryBalanceResponse = self.query(path, &req).await?;
        match resp.balance {
            None => Ok(0),
            Some(c) => parse_amount(&c.amount),
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
        let path = "/cosmos.authz.v1beta1.Query/Grants";
        let req = QueryGrantsRequest {
            granter: granter.into(),
            grantee: grantee.into(),
            msg_type_url: MSG_SEND_TYPE.into(),
            pagination: None,
        };
        let resp: QueryGrantsResponse = match self.query(path, &req).await {
            Ok(r) => r,
            Err(ChainError::Query { log, .. }) if log.contains("not found") => return Ok(None),
            Err(e) => return Err(e),
        };
        for grant in resp.grants {
            let Some(auth) = grant.authorization else { continue };
            if auth.type_url != SEND_AUTHORIZATION_TYPE {
                continue;
            }
            let send = SendAuthorization::decode(auth.value.as_slice()).map_err(|e| {
                ChainError::Decode { what: "SendAuthorization".into(), detail: e.to_string() }
            })?;
            let mut limit = Vec::with_capacity(send.spend_limit.len());
            for c in send.spend_limit {
                limit.push((c.denom, parse_amount(&c.amount)?));
            }
            return Ok(Some(limit));
        }
        Ok(None)
    }

    /// What `grantee` may still send from `granter` in `denom` (see [`send_allowance_in`]).
    pub async fn send_allowance(
        &self,
        granter: &str,
        grantee: &str,
        denom: &str,
    ) -> Result<SendAllowance, ChainError> {
        let path = "/cosmos.authz.v1beta1.Query/Grants";
        let req = QueryGrantsRequest {
            granter: granter.into(),
            grantee: grantee.into(),
            msg_type_url: MSG_SEND_TYPE.into(),
            pagination: None,
        };
        let resp: QueryGrantsResponse = match self.query(path, &req).await {
            Ok(r) => r,
            Err(ChainError::Query { log, .. }) if log.contains("not found") => {
                return Ok(SendAllowance::None)
            }
            Err(e) => return Err(e),
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        send_allowance_in(&resp.grants, denom, now)
    }

    /// Gas the chain uses to run `tx_bytes`, by simulation. Sign the simulated transaction
    /// with the real gas price: with a zero fee the chain skips the fee deduction and reports
    /// too little gas.
    pub async fn simulate(&self, tx_bytes: &[u8]) -> Result<u64, ChainError> {
        let path = "/cosmos.tx.v1beta1.Service/Simulate";
        #[allow(deprecated)]
        let req = SimulateRequest { tx: None, tx_bytes: tx_bytes.to_vec() };
        let resp: SimulateResponse = match self.query(path, &req).await {
            Ok(r) => r,
            Err(ChainError::Query { code, log, .. }) => {
                return Err(ChainError::Rejected { code, log })
            }
            Err(e) => return Err(e),
        };
        resp.gas_info.map(|g| g.gas_used).ok_or_else(|| ChainError::Decode {
            what: "simulation".into(),
            detail: "no gas info".into(),
        })
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
        let fee_amount = u128::from(gas_limit)
            .checked_mul(self.cfg.gas_price)
            .ok_or_else(|| ChainError::Build("fee overflows".into()))?;
        let denom =
            self.cfg.fee_denom.parse().map_err(|e| ChainError::Build(format!("fee denom: {e}")))?;
        let fee = Fee::from_amount_and_gas(cosmrs::Coin { denom, amount: fee_amount }, gas_limit);
        let body = Body::new(msgs, memo, 0u32);
        let auth_info = SignerInfo::single_direct(Some(key.public_key()), sequence).auth_info(fee);
        let chain_id = self
            .cfg
            .chain_id
            .parse()
            .map_err(|e| ChainError::Build(format!("chain id {}: {e}", self.cfg.chain_id)))?;
        let raw = SignDoc::new(&body, &auth_info, &chain_id, account_number)
            .and_then(|doc| doc.sign(key))
            .map_err(|e| ChainError::Build(format!("signing: {e}")))?;
        let bytes = raw.to_bytes().map_err(|e| ChainError::Build(format!("encoding: {e}")))?;
        let hash = tx_hash(&bytes);
        Ok(SignedTx { bytes, hash })
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
        let tx = cosmrs::Tx::from_bytes(&res.tx).map_err(|e| ChainError::Decode {
            what: format!("tx {hash}"),
            detail: e.to_string(),
        })?;
        let sequence = tx.auth_info.signer_infos.first().map(|s| s.sequence).unwrap_or_default();
        Ok(Some(TxOutcome {
            hash: hash.to_string(),
            height: res.height.value(),
            code: res.tx_result.code.value(),
            log: res.tx_result.log,
            gas_wanted: u64::try_from(res.tx_result.gas_wanted).unwrap_or_default(),
            gas_used: u64::try_from(res.tx_result.gas_used).unwrap_or_default(),
            memo: tx.body.memo,
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
            self.sign(key, account.number, account.sequence, msgs.clone(), memo, 400_000)?;
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
        let auth = SendAuthorization {
            spend_limit: spend_limit
                .iter()
                .map(|(denom, amount)| ProtoCoin {
                    denom: denom.clone(),
                    amount: amount.to_string(),
                })
                .collect(),
            allow_list: Vec::new(),
        };
        let authorization = Any::from_msg(&auth)
            .map_err(|e| ChainError::Build(format!("encoding SendAuthorization: {e}")))?;
        let grant = MsgGrant {
            granter,
            grantee: grantee.into(),
            grant: Some(Grant { authorization: Some(authorization), expiration: None }),
        };
        let msg = Any::from_msg(&grant).map_err(|e| ChainError::Build(format!("MsgGrant: {e}")))?;
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

/// A `MsgSend` as `Any`.
pub fn msg_send(from: &str, to: &str, denom: &str, amount: u128) -> Result<Any, ChainError> {
    let msg = MsgSend {
        from_address: from.into(),
        to_address: to.into(),
        amount: vec![ProtoCoin { denom: denom.into(), amount: amount.to_string() }],
    };
    Any::from_msg(&msg).map_err(|e| ChainError::Build(format!("MsgSend: {e}")))
}

/// The gas limit to sign with after a simulation used `simulated`: ×1.3 + 5000.
pub fn gas_with_margin(simulated: u64) -> u64 {
    simulated.saturating_mul(13).div_ceil(10).saturating_add(5_000)
}

/// Upper-case hex SHA-256 of transaction bytes, as CometBFT names transactions.
pub fn tx_hash(bytes: &[u8]) -> String {
    hex::encode_upper(Sha256::digest(bytes))
}

fn parse_amount(s: &str) -> Result<u128, ChainError> {
    s.parse::<u128>()
        .map_err(|e| ChainError::Decode { what: format!("amount {s:?}"), detail: e.to_string() })
}

/// Account number and sequence from an account `Any`: a plain `BaseAccount`, or Injective's
/// `EthAccount` whose field 1 is the `BaseAccount`.
fn decode_base_account(any: &Any) -> Result<BaseAccount, ChainError> {
    let decode_err = |e: prost::DecodeError| ChainError::Decode {
        what: any.type_url.clone(),
        detail: e.to_string(),
    };
    match any.type_url.as_str() {
        BASE_ACCOUNT_TYPE => BaseAccount::decode(any.value.as_slice()).map_err(decode_err),
        ETH_ACCOUNT_TYPE => {
            let wrapper = EthAccount::decode(any.value.as_slice()).map_err(decode_err)?;
            wrapper.base_account.ok_or_else(|| ChainError::Decode {
                what: ETH_ACCOUNT_TYPE.into(),
                detail: "no base_account".into(),
            })
        }
        other => Err(ChainError::Decode {
            what: "account".into(),
            detail: format!("unknown account type {other}"),
        }),
    }
}

/// `injective.types.v1beta1.EthAccount`: only the field we need; prost skips the others.
#[derive(Clone, PartialEq, prost::Message)]
struct EthAccount {
    #[prost(message, optional, tag = "1")]
    base_account: Option<BaseAccount>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eth_account_wrapper_yields_the_base_account() {
        let base = BaseAccount {
            address: "inj1xyz".into(),
            pub_key: None,
            account_number: 12,
            sequence: 34,
        };
        let mut value = EthAccount { base_account: Some(base.clone()) }.encode_to_vec();
        // A code_hash in field 2, as the chain sends it.
        value.extend_from_slice(&[0x12, 0x02, 0xab, 0xcd]);
        let any = Any { type_url: ETH_ACCOUNT_TYPE.into(), value };
        assert_eq!(decode_base_account(&any).unwrap(), base);
        let plain = Any { type_url: BASE_ACCOUNT_TYPE.into(), value: base.encode_to_vec() };
        assert_eq!(decode_base_account(&plain).unwrap(), base);
        let other = Any { type_url: "/x.Y".into(), value: vec![] };
        assert!(decode_base_account(&other).is_err());
    }

    fn coin(denom: &str, amount: &str) -> ProtoCoin {
        ProtoCoin { denom: denom.into(), amount: amount.into() }
    }

    fn grant(type_url: &str, value: Vec<u8>, expires_s: Option<i64>) -> Grant {
        Grant {
            authorization: Some(Any { type_url: type_url.into(), value }),
            expiration: expires_s.map(|seconds| cosmrs::proto::Timestamp { seconds, nanos: 0 }),
        }
    }

    #[test]
    fn send_allowance_reads_send_and_generic_authorizations() {
        let send = |coins: Vec<ProtoCoin>| {
            SendAuthorization { spend_limit: coins, allow_list: vec![] }.encode_to_vec()
        };
        let limited = grant(
            SEND_AUTHORIZATION_TYPE,
            send(vec![coin("inj", "1000000000000000000000"), coin("uusdt", "5")]),
            Some(2_000),
        );
        let now = 1_000;
        assert_eq!(
            send_allowance_in(std::slice::from_ref(&limited), "inj", now).unwrap(),
            SendAllowance::Limited(1_000_000_000_000_000_000_000)
        );
        assert_eq!(
            send_allowance_in(std::slice::from_ref(&limited), "uusdt", now).unwrap(),
            SendAllowance::Limited(5)
        );
        // Another denom, no grant, an expired grant, another message's grant: nothing.
        assert_eq!(
            send_allowance_in(std::slice::from_ref(&limited), "atom", now).unwrap(),
            SendAllowance::None
        );
        assert_eq!(send_allowance_in(&[], "inj", now).unwrap(), SendAllowance::None);
        assert_eq!(send_allowance_in(&[limited], "inj", 2_000).unwrap(), SendAllowance::None);
        let other = GenericAuthorization { msg: "/cosmos.staking.v1beta1.MsgDelegate".into() };
        let other = grant(GENERIC_AUTHORIZATION_TYPE, other.encode_to_vec(), None);
        assert_eq!(send_allowance_in(&[other], "inj", now).unwrap(), SendAllowance::None);
        // A generic grant for MsgSend: only the balance limits what can be sent.
        let generic = GenericAuthorization { msg: MSG_SEND_TYPE.into() };
        let generic = grant(GENERIC_AUTHORIZATION_TYPE, generic.encode_to_vec(), None);
        assert_eq!(send_allowance_in(&[generic], "inj", now).unwrap(), SendAllowance::Unlimited);
        // Garbage is an error, not a silent zero.
        let bad = grant(SEND_AUTHORIZATION_TYPE, vec![0xff, 0xff, 0xff], None);
        assert!(matches!(send_allowance_in(&[bad], "inj", now), Err(ChainError::Decode { .. })));
        let bad_amount = grant(SEND_AUTHORIZATION_TYPE, send(vec![coin("inj", "-1")]), None);
        assert!(send_allowance_in(&[bad_amount], "inj", now).is_err());
    }

    #[test]
    fn margin_is_thirty_percent_plus_5000() {
        assert_eq!(gas_with_margin(100_000), 135_000);
        assert_eq!(gas_with_margin(1), 5_002);
    }
}
