//! Errors of the chain client, and how the text of a refused broadcast is read.

use crate::anchor::AnchorError;

/// What went wrong talking to the chain.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChainError {
    /// The node did not answer (down, restarting, timed out): retry later, nothing changed.
    #[error("chain node unavailable at {url}: {detail}")]
    Unavailable { url: String, detail: String },
    /// The node refused a transaction (`CheckTx` or delivery failed).
    #[error("chain refused the transaction: code {code}: {log}")]
    Rejected { code: u32, log: String },
    /// A query answered with an error.
    #[error("chain query {path} failed: code {code}: {log}")]
    Query { path: String, code: u32, log: String },
    /// The node answered with bytes we cannot read.
    #[error("cannot decode the chain's answer to {what}: {detail}")]
    Decode { what: String, detail: String },
    /// Our own input cannot become a transaction (bad address, key, amount).
    #[error("cannot build the transaction: {0}")]
    Build(String),
    /// The node answered with an RPC error that is neither a refusal nor "not found".
    #[error("chain RPC error: {0}")]
    Rpc(String),
}

impl From<ChainError> for AnchorError {
    fn from(e: ChainError) -> Self {
        match e {
            ChainError::Unavailable { .. } => AnchorError::Unavailable(e.to_string()),
            ChainError::Rejected { code, log } => AnchorError::Rejected { code, log },
            ChainError::Rpc(_) => AnchorError::Unavailable(e.to_string()),
            other => AnchorError::Invalid(other.to_string()),
        }
    }
}

/// Cosmos SDK code for "account sequence mismatch".
pub const CODE_WRONG_SEQUENCE: u32 = 32;
/// Cosmos SDK code for "tx already in mempool".
pub const CODE_TX_IN_MEMPOOL: u32 = 19;

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

/// Whether an RPC error text says the transaction is already known to the node, which for a
/// rebroadcast of the same bytes means success.
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
    use super::*;

    #[test]
    fn reads_code_and_log_from_rpc_error_text() {
        let text = "Internal error: error on broadcastTxSync: code=32, log=account sequence mismatch, expected 7, got 5: incorrect account sequence";
        let (code, log) = parse_rejection(text).unwrap();
        assert_eq!(code, 32);
        assert!(log.starts_with("account sequence mismatch"));
        assert_eq!(parse_sequence_mismatch(&log), Some((7, 5)));
    }

    #[test]
    fn log_stops_before_codespace_and_trace() {
        let text = "Internal error: code=4, log='signature verification failed; please verify \
                    account number (0): unauthorized', codespace='sdk' (code: -32603)\n\nLocation:";
        let (code, log) = parse_rejection(text).unwrap();
        assert_eq!(code, 4);
        assert_eq!(
            log,
            "signature verification failed; please verify account number (0): unauthorized"
        );
    }

    #[test]
    fn no_code_means_not_a_rejection() {
        assert_eq!(parse_rejection("connection refused"), None);
        assert_eq!(parse_sequence_mismatch("insufficient funds"), None);
    }

    #[test]
    fn already_known_is_recognised() {
        assert!(is_already_known(None, "tx already exists in cache"));
        assert!(is_already_known(Some(19), "whatever"));
        assert!(!is_already_known(Some(5), "insufficient funds"));
    }
}
