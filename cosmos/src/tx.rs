//! Reading a signed Cosmos transaction (`TxRaw`) from its bytes: its hash, memo and signer
//! sequences. Only the fields read here are declared; prost skips the others but still checks
//! that every field is well-formed protobuf, so bytes that are not a message fail as a whole.

use prost::Message;
use sha2::{Digest as _, Sha256};

/// Why transaction bytes could not be read as a Cosmos `TxRaw`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TxDecodeError {
    /// Not protobuf, or a field of the wrong type (prost's own words in `detail`).
    #[error("the {what} is not valid protobuf: {detail}")]
    Protobuf { what: &'static str, detail: String },
    /// `body_bytes` is absent or empty: no real transaction has an empty body.
    #[error("the transaction has no body")]
    NoBody,
}

/// `cosmos.tx.v1beta1.TxRaw`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TxRaw {
    #[prost(bytes = "vec", tag = "1")]
    pub body_bytes: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    pub auth_info_bytes: Vec<u8>,
    #[prost(bytes = "vec", repeated, tag = "3")]
    pub signatures: Vec<Vec<u8>>,
}

/// The part of `cosmos.tx.v1beta1.TxBody` read here: the memo (field 2).
#[derive(Clone, PartialEq, prost::Message)]
struct TxBodyMemo {
    #[prost(string, tag = "2")]
    memo: String,
}

/// The part of `cosmos.tx.v1beta1.AuthInfo` read here: the signer infos (field 1).
#[derive(Clone, PartialEq, prost::Message)]
struct AuthInfoSigners {
    #[prost(message, repeated, tag = "1")]
    signer_infos: Vec<SignerSequence>,
}

/// The part of `cosmos.tx.v1beta1.SignerInfo` read here: the sequence (field 3).
#[derive(Clone, PartialEq, prost::Message)]
struct SignerSequence {
    #[prost(uint64, tag = "3")]
    sequence: u64,
}

/// What a transaction's bytes say about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxSummary {
    /// Upper-case hex SHA-256 of the bytes: the hash CometBFT names the transaction by.
    pub hash: String,
    pub memo: String,
    /// The sequence of each signer, in order.
    pub sequences: Vec<u64>,
    /// How many signatures `TxRaw` carries (one per signer; a multisig signer carries one).
    pub signatures: usize,
}

/// Upper-case hex SHA-256 of transaction bytes, as CometBFT names transactions.
pub fn tx_hash(bytes: &[u8]) -> String {
    hex::encode_upper(Sha256::digest(bytes))
}

fn protobuf(what: &'static str) -> impl Fn(prost::DecodeError) -> TxDecodeError {
    move |e| TxDecodeError::Protobuf { what, detail: e.to_string() }
}

/// Decodes `TxRaw`; an empty body is [`TxDecodeError::NoBody`].
pub fn decode_raw(tx: &[u8]) -> Result<TxRaw, TxDecodeError> {
    let raw = TxRaw::decode(tx).map_err(protobuf("transaction"))?;
    if raw.body_bytes.is_empty() {
        return Err(TxDecodeError::NoBody);
    }
    Ok(raw)
}

/// The memo of a Cosmos transaction (`TxRaw.body_bytes` → `TxBody.memo`); an absent memo is
/// empty. A memo that is not UTF-8 fails (prost checks strings).
pub fn tx_memo(tx: &[u8]) -> Result<String, TxDecodeError> {
    let raw = decode_raw(tx)?;
    Ok(TxBodyMemo::decode(raw.body_bytes.as_slice()).map_err(protobuf("body"))?.memo)
}

/// Hash, memo, signer sequences and signature count of a transaction.
pub fn summarize(tx: &[u8]) -> Result<TxSummary, TxDecodeError> {
    let raw = decode_raw(tx)?;
    let memo = TxBodyMemo::decode(raw.body_bytes.as_slice()).map_err(protobuf("body"))?.memo;
    let auth =
        AuthInfoSigners::decode(raw.auth_info_bytes.as_slice()).map_err(protobuf("auth info"))?;
    Ok(TxSummary {
        hash: tx_hash(tx),
        memo,
        sequences: auth.signer_infos.iter().map(|s| s.sequence).collect(),
        signatures: raw.signatures.len(),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn varint(mut n: u64, out: &mut Vec<u8>) {
        while n >= 0x80 {
            out.push((n as u8) | 0x80);
            n >>= 7;
        }
        out.push(n as u8);
    }

    fn field(number: u64, bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        varint(number << 3 | 2, &mut out);
        varint(bytes.len() as u64, &mut out);
        out.extend_from_slice(bytes);
        out
    }

    #[test]
    fn memo_sequences_and_signatures_are_read() {
        let mut body = field(1, b"any message");
        body.extend(field(2, b"lm:v1:memo"));
        body.extend([3 << 3, 0x96, 0x01]); // timeout_height, a varint: skipped
        let signer = [&field(1, b"pubkey")[..], &[3 << 3, 7]].concat();
        let auth = [field(1, &signer), field(1, &[3 << 3, 9])].concat();
        let tx = [field(1, &body), field(2, &auth), field(3, &[1; 64])].concat();
        let s = summarize(&tx).unwrap();
        assert_eq!(s.memo, "lm:v1:memo");
        assert_eq!(s.sequences, [7, 9]);
        assert_eq!(s.signatures, 1);
        assert_eq!(s.hash, tx_hash(&tx));
        assert_eq!(s.hash.len(), 64);
        // The last memo wins, as protobuf merges; no memo is an empty memo.
        let twice = [field(2, b"first"), field(2, b"second")].concat();
        assert_eq!(tx_memo(&field(1, &twice)).unwrap(), "second");
        assert_eq!(tx_memo(&field(1, &field(1, b"msg"))).unwrap(), "");
    }

    #[test]
    fn bad_bytes_are_typed_errors() {
        assert_eq!(tx_memo(&[]), Err(TxDecodeError::NoBody));
        assert_eq!(tx_memo(&field(2, b"auth only")), Err(TxDecodeError::NoBody));
        let not_utf8 = field(1, &field(2, &[0xff, 0xfe]));
        assert!(matches!(tx_memo(&not_utf8), Err(TxDecodeError::Protobuf { what: "body", .. })));
        // body_bytes as a varint: the wrong wire type for a bytes field.
        assert!(matches!(tx_memo(&[0x08, 0x01]), Err(TxDecodeError::Protobuf { .. })));
        // A length near u64::MAX does not overflow.
        let mut huge = vec![0x0a];
        varint(u64::MAX, &mut huge);
        assert!(matches!(tx_memo(&huge), Err(TxDecodeError::Protobuf { .. })));
    }
}
