//! CometBFT JSON-RPC without the transport: the request body, and typed readings of the answers
//! (`tx`, `abci_query`, `broadcast_tx_sync`, errors). The blocking light client (ureq) and the
//! async settler (tendermint-rpc) each do their own HTTP and share what the answers mean.

use base64::Engine as _;
use serde_json::{json, Value};

/// Cosmos SDK code for "unauthorized" (a signature that does not verify).
pub const CODE_UNAUTHORIZED: u32 = 4;
/// Cosmos SDK code for "tx already in mempool".
pub const CODE_TX_IN_MEMPOOL: u32 = 19;
/// Cosmos SDK code for "account sequence mismatch".
pub const CODE_WRONG_SEQUENCE: u32 = 32;

/// Why a JSON-RPC answer could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AnswerError {
    /// The node answered with a JSON-RPC error object (its message and data).
    #[error("RPC error: {0}")]
    Rpc(String),
    #[error("no {0}")]
    Missing(&'static str),
    #[error("the {0} is not a number")]
    Number(&'static str),
    #[error("tx is not base64: {0}")]
    Base64(String),
}

impl AnswerError {
    /// The node said it does not have what was asked for (a transaction not yet in a block).
    pub fn is_not_found(&self) -> bool {
        matches!(self, AnswerError::Rpc(text) if text.contains("not found"))
    }
}

/// The body of one JSON-RPC 2.0 call.
pub fn request(method: &str, params: Value) -> Value {
    json!({ "jsonrpc": "2.0", "id": 1, "method": method, "params": params })
}

/// A JSON number or decimal string (CometBFT writes int64 as strings).
pub fn number(v: Option<&Value>) -> Option<u64> {
    match v? {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

fn text(v: &Value, key: &str) -> String {
    v.get(key).and_then(Value::as_str).unwrap_or_default().to_owned()
}

/// A result code: 0 when left out (CometBFT omits zero values), an error when not a u32.
fn code(v: &Value, what: &'static str) -> Result<u32, AnswerError> {
    match v.get("code") {
        None | Some(Value::Null) => Ok(0),
        c => number(c).and_then(|c| u32::try_from(c).ok()).ok_or(AnswerError::Number(what)),
    }
}

/// A JSON-RPC error object as one line: `message data`.
pub fn error_text(e: &Value) -> String {
    format!("{} {}", text(e, "message"), text(e, "data")).trim().to_owned()
}

/// The `result` of a JSON-RPC response, or its error as [`AnswerError::Rpc`].
pub fn result(response: &Value) -> Result<&Value, AnswerError> {
    if let Some(e) = response.get("error") {
        return Err(AnswerError::Rpc(error_text(e)));
    }
    response.get("result").ok_or(AnswerError::Missing("result"))
}

/// A transaction in a block, as the `tx` method answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxAnswer {
    /// The hash the node reports (upper-case hex).
    pub hash: String,
    pub height: u64,
    /// 0 when it succeeded; otherwise it was reverted (the fee still charged).
    pub code: u32,
    pub log: String,
    pub gas_wanted: u64,
    pub gas_used: u64,
    /// The transaction's bytes.
    pub tx: Vec<u8>,
}

impl TxAnswer {
    /// Reads a whole `tx` response (`result` or `error`).
    pub fn from_response(response: &Value) -> Result<TxAnswer, AnswerError> {
        let r = result(response)?;
        let hash = r.get("hash").and_then(Value::as_str).ok_or(AnswerError::Missing("hash"))?;
        let height = number(r.get("height")).ok_or(AnswerError::Missing("height"))?;
        let res = r.get("tx_result").ok_or(AnswerError::Missing("tx_result"))?;
        let tx = base64::engine::general_purpose::STANDARD
            .decode(r.get("tx").and_then(Value::as_str).ok_or(AnswerError::Missing("tx"))?)
            .map_err(|e| AnswerError::Base64(e.to_string()))?;
        Ok(TxAnswer {
            hash: hash.to_owned(),
            height,
            code: code(res, "code")?,
            log: text(res, "log"),
            gas_wanted: number(res.get("gas_wanted")).unwrap_or_default(),
            gas_used: number(res.get("gas_used")).unwrap_or_default(),
            tx,
        })
    }
}

/// What `abci_query` answered: the app's code and log, and the value (empty when refused).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AbciAnswer {
    pub code: u32,
    pub log: String,
    pub value: Vec<u8>,
}

impl AbciAnswer {
    pub fn from_response(response: &Value) -> Result<AbciAnswer, AnswerError> {
        let r = result(response)?.get("response").ok_or(AnswerError::Missing("response"))?;
        let value = match r.get("value").and_then(Value::as_str) {
            None => Vec::new(),
            Some(v) => base64::engine::general_purpose::STANDARD
                .decode(v)
                .map_err(|e| AnswerError::Base64(e.to_string()))?,
        };
        Ok(AbciAnswer { code: code(r, "code")?, log: text(r, "log"), value })
    }
}

/// The `params` of an `abci_query` call.
pub fn abci_query_params(path: &str, data: &[u8]) -> Value {
    json!({ "path": path, "data": hex::encode_upper(data), "prove": false })
}

/// The `params` of a `broadcast_tx_sync` call.
pub fn broadcast_params(tx: &[u8]) -> Value {
    json!({ "tx": base64::engine::general_purpose::STANDARD.encode(tx) })
}

/// The `params` of a `tx` call for a hex hash; `None` when `hash` is not hex.
pub fn tx_params(hash: &str) -> Option<Value> {
    let raw = hex::decode(hash).ok()?;
    Some(json!({ "hash": base64::engine::general_purpose::STANDARD.encode(raw), "prove": false }))
}

/// What `broadcast_tx_sync` answered when it was not an RPC error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BroadcastAnswer {
    pub code: u32,
    pub log: String,
    pub hash: String,
}

impl BroadcastAnswer {
    pub fn from_response(response: &Value) -> Result<BroadcastAnswer, AnswerError> {
        let r = result(response)?;
        Ok(BroadcastAnswer {
            code: code(r, "code")?,
            log: text(r, "log"),
            hash: text(r, "hash").to_ascii_uppercase(),
        })
    }
}

/// Reads `code=NN` and `log=...` out of the text of an RPC error, as CometBFT 1.0 reports a
/// transaction refused by `CheckTx` from `broadcast_tx_sync` on this chain.
pub fn parse_rejection(text: &str) -> Option<(u32, String)> {
    let at = text.find("code=")?;
    let digits: String = text[at + 5..].chars().take_while(|c| c.is_ascii_digit()).collect();
    let code = digits.parse::<u32>().ok()?;
    let log = match text.find("log=") {
        Some(l) => {
            let rest = &text[l + 4..];
            let end = [rest.find("', codespace="), rest.find('\n')]
                .into_iter()
                .flatten()
                .min()
                .unwrap_or(rest.len());
            rest[..end].trim().trim_matches(['\'', '"']).trim().to_string()
        }
        None => text.to_string(),
    };
    Some((code, log))
}

/// Whether a refusal says the node already has the transaction, which for a rebroadcast of the
/// same bytes means success.
pub fn is_already_known(code: Option<u32>, text: &str) -> bool {
    let lower = text.to_ascii_lowercase();
    code == Some(CODE_TX_IN_MEMPOOL)
        || lower.contains("tx already exists in cache")
        || lower.contains("tx already in mempool")
}

/// For a sequence mismatch, the sequence the chain expected and the one the tx carried
/// (`account sequence mismatch, expected 7, got 5`).
pub fn parse_sequence_mismatch(log: &str) -> Option<(u64, u64)> {
    let e = log.find("expected ")?;
    let expected: String = log[e + 9..].chars().take_while(|c| c.is_ascii_digit()).collect();
    let g = log.find("got ")?;
    let got: String = log[g + 4..].chars().take_while(|c| c.is_ascii_digit()).collect();
    Some((expected.parse().ok()?, got.parse().ok()?))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_tx_answer_reads_strings_numbers_and_a_left_out_code() {
        let v = json!({"result": {"hash": "AB", "height": "4", "tx": "AQI=",
            "tx_result": {"gas_wanted": "10", "gas_used": 7, "log": ""}}});
        let t = TxAnswer::from_response(&v).unwrap();
        assert_eq!((t.height, t.code, t.gas_wanted, t.gas_used), (4, 0, 10, 7));
        assert_eq!(t.tx, [1, 2]);
        let e = json!({"error": {"message": "Internal error", "data": "tx (AB) not found"}});
        let err = TxAnswer::from_response(&e).unwrap_err();
        assert!(err.is_not_found(), "{err}");
        let bad = json!({"result": {"hash": "AB", "height": 1, "tx": "%%", "tx_result": {}}});
        assert!(matches!(TxAnswer::from_response(&bad), Err(AnswerError::Base64(_))));
        let code =
            json!({"result": {"hash": "AB", "height": 1, "tx": "", "tx_result": {"code": "x"}}});
        assert_eq!(TxAnswer::from_response(&code), Err(AnswerError::Number("code")));
    }

    #[test]
    fn abci_and_broadcast_answers() {
        let q = json!({"result": {"response": {"code": 0, "value": "AQI="}}});
        assert_eq!(AbciAnswer::from_response(&q).unwrap().value, [1, 2]);
        let refused = json!({"result": {"response": {"code": 22, "log": "key not found"}}});
        let a = AbciAnswer::from_response(&refused).unwrap();
        assert_eq!((a.code, a.log.as_str(), a.value.len()), (22, "key not found", 0));
        let b = json!({"result": {"code": 0, "hash": "ab"}});
        assert_eq!(BroadcastAnswer::from_response(&b).unwrap().hash, "AB");
        assert_eq!(tx_params("zz"), None);
    }

    #[test]
    fn reads_code_and_log_from_rpc_error_text() {
        let text = "Internal error: error on broadcastTxSync: code=32, log=account sequence mismatch, expected 7, got 5: incorrect account sequence";
        let (code, log) = parse_rejection(text).unwrap();
        assert_eq!(code, 32);
        assert!(log.starts_with("account sequence mismatch"));
        assert_eq!(parse_sequence_mismatch(&log), Some((7, 5)));
        let text = "Internal error: code=4, log='signature verification failed; please verify \
                    account number (0): unauthorized', codespace='sdk' (code: -32603)\n\nLocation:";
        let (code, log) = parse_rejection(text).unwrap();
        assert_eq!(code, 4);
        assert_eq!(
            log,
            "signature verification failed; please verify account number (0): unauthorized"
        );
        assert_eq!(parse_rejection("connection refused"), None);
        assert_eq!(parse_sequence_mismatch("insufficient funds"), None);
        assert!(is_already_known(None, "tx already exists in cache"));
        assert!(is_already_known(Some(19), "whatever"));
        assert!(!is_already_known(Some(5), "insufficient funds"));
    }
}
