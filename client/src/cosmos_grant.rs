//! The tenant's grant on a Cosmos chain (feature `cosmos`): an authz `MsgGrant` of a
//! `SendAuthorization` to the settler's chain account, signed with the tenant's secp256k1 chain
//! key and sent through the chain's CometBFT JSON-RPC (blocking HTTP, no async runtime), then
//! the ADR-036 binding of the chain address to the tenant's ed25519 key posted to the settler
//! (`POST /v1/ledger/bindings`), so the settler charges that address for the tenant's orders.
//!
//! Transactions are built and signed with cosmrs (without its RPC client); queries go through
//! `abci_query`, the transaction through `broadcast_tx_sync`, confirmation by polling `tx`.

use std::time::{Duration, Instant};

use leasemesh_cosmos::cosmrs::Any;
use leasemesh_cosmos::query;
use leasemesh_cosmos::rpc::{self, AbciAnswer, AnswerError, BroadcastAnswer, TxAnswer};
use leasemesh_cosmos::sign::{self as cosmos_sign, gas_with_margin, TxParams, PROBE_GAS};
use leasemesh_cosmos::CosmosError;
use leasemesh_protocol::binding::{Binding, BindingError};
use leasemesh_protocol::{Coin, Keypair};
use serde_json::{json, Value};

use crate::NodeClient;

/// How long to wait for the grant to land in a block.
pub const TX_WAIT: Duration = Duration::from_secs(30);

/// Why a chain step failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ChainError {
    #[error("cannot reach the chain RPC {url}: {detail}")]
    Unavailable { url: String, detail: String },
    #[error("chain RPC {url}: {detail}")]
    Rpc { url: String, detail: String },
    #[error("the chain refused the transaction: code={code}, log={log}")]
    Rejected { code: u32, log: String },
    #[error("cannot decode {what} from the chain: {detail}")]
    Decode { what: String, detail: String },
    #[error("building the transaction: {0}")]
    Build(String),
    #[error("the chain key is not a hex secp256k1 secret: {0}")]
    Key(String),
    #[error("account {0} does not exist on the chain: fund it first")]
    NoAccount(String),
    #[error("tx {hash} not in a block after {waited:?}")]
    Timeout { hash: String, waited: Duration },
    #[error("binding: {0}")]
    Binding(#[from] BindingError),
    #[error("the node says: {0}")]
    Node(#[from] crate::ClientError),
    #[error("chain parameters: {0}")]
    Params(String),
}

impl From<CosmosError> for ChainError {
    fn from(e: CosmosError) -> Self {
        match e {
            CosmosError::Key(k) => ChainError::Key(k),
            CosmosError::Decode { what, detail } => ChainError::Decode { what, detail },
            other => ChainError::Build(other.to_string()),
        }
    }
}

/// Where the chain is and what it charges, as the settler's genesis says
/// (`settlement_chain` of `GET /v1/settler/status`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainParams {
    pub rpc_url: String,
    pub chain_id: String,
    pub account_prefix: String,
    pub fee_denom: String,
    /// Price of a gas unit in `fee_denom`.
    pub gas_price: u128,
}

impl ChainParams {
    fn tx_params(&self) -> TxParams {
        TxParams {
            chain_id: self.chain_id.clone(),
            fee_denom: self.fee_denom.clone(),
            gas_price: self.gas_price,
        }
    }

    /// Injective's defaults (prefix and fee denom `inj`, minimum gas price 160000000inj).
    pub fn injective(rpc_url: impl Into<String>, chain_id: impl Into<String>) -> ChainParams {
        ChainParams {
            rpc_url: rpc_url.into(),
            chain_id: chain_id.into(),
            account_prefix: "inj".into(),
            fee_denom: "inj".into(),
            gas_price: 160_000_000,
        }
    }

    /// From `GET /v1/settler/status`: `None` when the mesh settles on the embedded ledger.
    pub fn from_status(status: &Value) -> Result<Option<ChainParams>, ChainError> {
        if status.get("settlement_backend").and_then(Value::as_str) != Some("cosmos") {
            return Ok(None);
        }
        let c = status
            .get("settlement_chain")
            .ok_or_else(|| ChainError::Params("the node reports no settlement_chain".into()))?;
        let s = |k: &str| c.get(k).and_then(Value::as_str).map(str::to_owned);
        let rpc_url = s("rpc_url").ok_or_else(|| ChainError::Params("no rpc_url".into()))?;
        let chain_id = s("chain_id").ok_or_else(|| ChainError::Params("no chain_id".into()))?;
        let mut p = ChainParams::injective(rpc_url, chain_id);
        if let Some(x) = s("account_prefix") {
            p.account_prefix = x;
        }
        if let Some(x) = s("fee_denom") {
            p.fee_denom = x;
        }
        match c.get("gas_price") {
            None | Some(Value::Null) => {}
            Some(Value::String(x)) => {
                p.gas_price =
                    x.parse().map_err(|e| ChainError::Params(format!("gas_price {x:?}: {e}")))?
            }
            Some(Value::Number(n)) => {
                p.gas_price = n
                    .as_u64()
                    .map(u128::from)
                    .ok_or_else(|| ChainError::Params(format!("gas_price {n}")))?
            }
            Some(other) => return Err(ChainError::Params(format!("gas_price {other}"))),
        }
        Ok(Some(p))
    }
}

/// Reads a chain key file: a hex secp256k1 secret (surrounding whitespace allowed).
pub fn load_chain_key(path: &std::path::Path) -> Result<[u8; 32], ChainError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ChainError::Key(format!("{}: {e}", path.display())))?;
    let bytes = hex::decode(text.trim())
        .map_err(|e| ChainError::Key(format!("{}: {e}", path.display())))?;
    let secret: [u8; 32] = bytes.as_slice().try_into().map_err(|_| {
        ChainError::Key(format!("{}: {} bytes, not 32", path.display(), bytes.len()))
    })?;
    cosmos_sign::signing_key(&secret)?;
    Ok(secret)
}

/// A blocking CometBFT JSON-RPC client.
#[derive(Debug, Clone)]
pub struct CometRpc {
    url: String,
    agent: ureq::Agent,
}

/// One transaction in a block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxResult {
    pub hash: String,
    pub height: u64,
    pub code: u32,
    pub log: String,
    pub gas_used: u64,
}

impl CometRpc {
    pub fn new(url: &str) -> CometRpc {
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(Duration::from_secs(5))
            .timeout(Duration::from_secs(30))
            .build();
        CometRpc { url: url.trim_end_matches('/').to_owned(), agent }
    }

    /// One JSON-RPC call: the whole response (its `result` or its `error`).
    fn call(&self, method: &str, params: Value) -> Result<Value, ChainError> {
        let resp = match self.agent.post(&self.url).send_json(rpc::request(method, params)) {
            Ok(r) => r,
            // JSON-RPC errors may come with an HTTP error status: read the body anyway.
            Err(ureq::Error::Status(_, r)) => r,
            Err(e) => {
                return Err(ChainError::Unavailable {
                    url: self.url.clone(),
                    detail: e.to_string(),
                })
            }
        };
        resp.into_json()
            .map_err(|e| ChainError::Decode { what: method.into(), detail: e.to_string() })
    }

    fn answer_error(&self, method: &str, e: AnswerError) -> ChainError {
        match e {
            AnswerError::Rpc(detail) => ChainError::Rpc { url: self.url.clone(), detail },
            other => ChainError::Decode { what: method.into(), detail: other.to_string() },
        }
    }

    /// An ABCI query: the response's value, or `Err((code, log))` when the app refused it.
    fn abci_query(
        &self,
        q: query::AbciQuery,
    ) -> Result<Result<Vec<u8>, (u32, String)>, ChainError> {
        let v = self.call("abci_query", rpc::abci_query_params(q.path, &q.data))?;
        let a = AbciAnswer::from_response(&v).map_err(|e| self.answer_error(q.path, e))?;
        Ok(if a.code == 0 { Ok(a.value) } else { Err((a.code, a.log)) })
    }

    /// Account number and sequence; `None` for an account the chain has never seen.
    pub fn account(&self, address: &str) -> Result<Option<(u64, u64)>, ChainError> {
        match self.abci_query(query::account_query(address))? {
            Ok(v) => Ok(query::decode_account(&v)?.map(|a| (a.number, a.sequence))),
            Err((_, log)) if query::is_not_found(&log) => Ok(None),
            Err((code, log)) => Err(ChainError::Rejected { code, log }),
        }
    }

    /// Gas used by a simulation of `tx_bytes`.
    pub fn simulate(&self, tx_bytes: &[u8]) -> Result<u64, ChainError> {
        match self.abci_query(query::simulate_query(tx_bytes))? {
            Ok(v) => Ok(query::decode_simulate(&v)?),
            Err((code, log)) => Err(ChainError::Rejected { code, log }),
        }
    }

    /// `broadcast_tx_sync`: the upper-case hex hash once the mempool took the transaction.
    pub fn broadcast_tx_sync(&self, tx_bytes: &[u8]) -> Result<String, ChainError> {
        let v = self.call("broadcast_tx_sync", rpc::broadcast_params(tx_bytes))?;
        let a = match BroadcastAnswer::from_response(&v) {
            Ok(a) => a,
            Err(AnswerError::Rpc(text)) => {
                return Err(match rpc::parse_rejection(&text) {
                    Some((code, log)) => ChainError::Rejected { code, log },
                    None => ChainError::Rpc { url: self.url.clone(), detail: text },
                })
            }
            Err(e) => return Err(self.answer_error("broadcast_tx_sync", e)),
        };
        if a.code != 0 {
            return Err(ChainError::Rejected { code: a.code, log: a.log });
        }
        Ok(a.hash)
    }

    /// The transaction with this hash (hex), `None` while it is not in a block.
    pub fn tx(&self, hash: &str) -> Result<Option<TxResult>, ChainError> {
        let params =
            rpc::tx_params(hash).ok_or_else(|| ChainError::Build(format!("tx hash {hash}")))?;
        let v = self.call("tx", params)?;
        let t = match TxAnswer::from_response(&v) {
            Ok(t) => t,
            Err(e) if e.is_not_found() => return Ok(None),
            Err(e) => return Err(self.answer_error("tx", e)),
        };
        Ok(Some(TxResult {
            hash: hash.to_owned(),
            height: t.height,
            code: t.code,
            log: t.log,
            gas_used: t.gas_used,
        }))
    }

    /// Polls `tx` until the transaction is in a block or `wait` has passed.
    pub fn wait_tx(&self, hash: &str, wait: Duration) -> Result<TxResult, ChainError> {
        let start = Instant::now();
        loop {
            if let Some(t) = self.tx(hash)? {
                return Ok(t);
            }
            if start.elapsed() >= wait {
                return Err(ChainError::Timeout { hash: hash.into(), waited: wait });
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    }
}

/// The bech32 address of a chain key.
pub fn chain_address(secret: &[u8; 32], prefix: &str) -> Result<String, ChainError> {
    let key = cosmos_sign::signing_key(secret)?;
    Ok(cosmos_sign::address_of(&key.public_key(), prefix)?)
}

/// The authz `MsgGrant` of a `SendAuthorization` of `limit`, without expiry.
pub fn msg_grant(granter: &str, grantee: &str, limit: &Coin) -> Result<Any, ChainError> {
    let spend_limit = [(limit.denom.clone(), limit.amount)];
    Ok(cosmos_sign::msg_grant_send(granter, grantee, &spend_limit)?)
}

/// Signs one transaction of `msgs`; the fee is `gas_limit × gas_price`.
pub fn sign_tx(
    params: &ChainParams,
    secret: &[u8; 32],
    account_number: u64,
    sequence: u64,
    msgs: Vec<Any>,
    memo: &str,
    gas_limit: u64,
) -> Result<Vec<u8>, ChainError> {
    let key = cosmos_sign::signing_key(secret)?;
    let tx = params.tx_params();
    Ok(cosmos_sign::sign_direct(&tx, &key, account_number, sequence, msgs, memo, gas_limit)?.bytes)
}

/// What [`grant_on_chain`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainGrant {
    /// The tenant's chain address (the granter, and the address its orders name).
    pub granter: String,
    /// The settler's chain address.
    pub grantee: String,
    pub tx: TxResult,
}

/// Sends the authz grant of `limit` from the chain key's account to `grantee` and waits until
/// it is in a block (gas from a simulation, ×1.3 + 5000; fee = gas × gas price).
pub fn grant_on_chain(
    params: &ChainParams,
    secret: &[u8; 32],
    grantee: &str,
    limit: &Coin,
) -> Result<ChainGrant, ChainError> {
    let rpc = CometRpc::new(&params.rpc_url);
    let granter = chain_address(secret, &params.account_prefix)?;
    let (number, sequence) =
        rpc.account(&granter)?.ok_or_else(|| ChainError::NoAccount(granter.clone()))?;
    let msgs = vec![msg_grant(&granter, grantee, limit)?];
    let memo = "lm:v1:grant";
    let probe = sign_tx(params, secret, number, sequence, msgs.clone(), memo, PROBE_GAS)?;
    let used = rpc.simulate(&probe)?;
    let tx = sign_tx(params, secret, number, sequence, msgs, memo, gas_with_margin(used))?;
    let hash = rpc.broadcast_tx_sync(&tx)?;
    let out = rpc.wait_tx(&hash, TX_WAIT)?;
    if out.code != 0 {
        return Err(ChainError::Rejected { code: out.code, log: out.log });
    }
    Ok(ChainGrant { granter, grantee: grantee.to_owned(), tx: out })
}

/// Signs the ADR-036 binding of the chain key's address to `tenant`'s ed25519 key.
pub fn binding(
    params: &ChainParams,
    secret: &[u8; 32],
    tenant: &Keypair,
) -> Result<Binding, ChainError> {
    Ok(Binding::sign(secret, &params.account_prefix, &tenant.public())?)
}

/// Posts a binding to the settlement settler (`POST /v1/ledger/bindings`).
pub fn post_binding(client: &NodeClient, b: &Binding) -> Result<Value, ChainError> {
    let body = serde_json::to_value(b.to_request())
        .map_err(|e| ChainError::Build(format!("binding JSON: {e}")))?;
    Ok(client.post_json("/v1/ledger/bindings", &body)?)
}

/// `leasemesh grant` on a Cosmos chain: the authz grant of `limit` to the settler's chain
/// account, then the binding of the chain address to the tenant's key. `params` from
/// [`ChainParams::from_status`] (the caller may override the RPC URL).
pub fn grant_and_bind(
    client: &NodeClient,
    params: &ChainParams,
    secret: &[u8; 32],
    tenant: &Keypair,
    limit: &Coin,
) -> Result<Value, ChainError> {
    let grantee = crate::settle::settlement_address(client)?;
    let g = grant_on_chain(params, secret, &grantee, limit)?;
    let b = binding(params, secret, tenant)?;
    let bound = post_binding(client, &b)?;
    Ok(json!({
        "backend": "cosmos",
        "chain_id": params.chain_id,
        "granter": g.granter,
        "grantee": g.grantee,
        "limit": limit,
        "tx_hash": g.tx.hash,
        "height": g.tx.height,
        "gas_used": g.tx.gas_used,
        "binding": bound,
    }))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn chain_params_come_from_the_settler_status() {
        let local = json!({ "settlement_backend": "local", "settlement_chain": null });
        assert_eq!(ChainParams::from_status(&local).unwrap(), None);
        let status = json!({
            "settlement_backend": "cosmos",
            "settlement_chain": {
                "rpc_url": "http://127.0.0.1:26657", "chain_id": "injective-777",
                "gas_price": "170000000"
            }
        });
        let p = ChainParams::from_status(&status).unwrap().unwrap();
        assert_eq!(p.chain_id, "injective-777");
        assert_eq!(p.account_prefix, "inj");
        assert_eq!(p.gas_price, 170_000_000);
        let bad =
            json!({ "settlement_backend": "cosmos", "settlement_chain": { "chain_id": "x" } });
        assert!(matches!(ChainParams::from_status(&bad), Err(ChainError::Params(_))));
    }

    #[test]
    fn the_binding_names_the_same_address_as_cosmrs() {
        let secret = [0x42u8; 32];
        let b = binding(&ChainParams::injective("", ""), &secret, &Keypair::from_seed_label("t"))
            .unwrap();
        assert_eq!(b.address, chain_address(&secret, "inj").unwrap());
        b.verify().unwrap();
    }

    #[test]
    fn a_grant_tx_signs_and_an_unreachable_rpc_is_a_typed_error() {
        let p = ChainParams::injective("http://127.0.0.1:9", "injective-777");
        let secret = [0x42u8; 32];
        let from = chain_address(&secret, "inj").unwrap();
        let msg = msg_grant(&from, "inj1settler", &Coin::new("inj", 5)).unwrap();
        let tx = sign_tx(&p, &secret, 1, 0, vec![msg], "", 100_000).unwrap();
        assert!(!tx.is_empty());
        assert!(matches!(
            CometRpc::new(&p.rpc_url).account(&from),
            Err(ChainError::Unavailable { .. })
        ));
        assert!(matches!(
            load_chain_key(std::path::Path::new("/nonexistent")),
            Err(ChainError::Key(_))
        ));
    }
}
