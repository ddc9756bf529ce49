//! Checking a Cosmos anchor on the chain itself, not on the node's word.
//!
//! The node's anchor record names the chain and the transactions that anchored a batch. Here
//! each transaction is fetched from the chain's CometBFT JSON-RPC (`GET <rpc>/tx?hash=0x<HASH>`),
//! its bytes are hashed (SHA-256, the chain's tx hash) and decoded just far enough to read the
//! memo (`TxRaw.body_bytes` → `TxBody.memo`, with the shared Cosmos module's prost-derived
//! messages), and the memo must be the batch's
//! [`AnchorMemo`]: its sequence, its Merkle root, and a chunk index; together the memos must
//! cover every chunk exactly once. The RPC's own chain id (`GET <rpc>/status`) must be the
//! anchor's.
//!
//! What this trusts: the RPC, to say truthfully that a transaction was committed. An RPC the
//! tenant chooses (`--chain-rpc`) is trusted more than one the node reports, since a node that
//! lies about an anchor could as well point at a chain it controls.
//!
//! The pure parts ([`tx_memo`], [`judge`]) take bytes and recorded JSON; [`check_chain_anchor`]
//! adds the HTTP calls.

use std::collections::BTreeMap;

use leasemesh_cosmos::rpc::{self, TxAnswer};
use leasemesh_cosmos::tx::tx_hash;
use leasemesh_protocol::proof::{AnchorMemo, MemoError};
use leasemesh_protocol::{Anchor, Hash};
use serde::{Serialize, Serializer};
use serde_json::Value;

pub use leasemesh_cosmos::tx::{tx_memo, TxDecodeError};

/// Most transactions one anchor may name before the client refuses to fetch them all (a batch of
/// thousands of leases takes a handful).
pub const MAX_ANCHOR_TXS: usize = 1024;

/// What is wrong with one anchoring transaction.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TxProblem {
    #[error("the anchor names {0:?}, which is not a 64-digit hex transaction hash")]
    BadHash(String),
    #[error("could not fetch it from the chain: {0}")]
    Fetch(String),
    #[error("the RPC answer is not a transaction: {0}")]
    Answer(String),
    #[error("the RPC returned transaction {got}, not the one asked for")]
    OtherHash { got: String },
    #[error("its bytes hash to {got}, not to its hash")]
    BytesHash { got: String },
    #[error("the chain did not commit it: code {code}: {log}")]
    Failed { code: u32, log: String },
    #[error("its bytes do not decode: {0}")]
    Decode(#[from] TxDecodeError),
    #[error("its memo is not a leasemesh anchor: {0}")]
    Memo(#[from] MemoError),
    #[error("its memo names batch #{got}, not #{want}")]
    Sequence { got: u64, want: u64 },
    #[error("its memo names root {got}, not the batch root {want}")]
    Root { got: Hash, want: Hash },
}

/// What is wrong with the anchor as a whole.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AnchorProblem {
    #[error("the anchor names no transaction")]
    NoTxs,
    #[error(
        "the anchor names {0} transactions, more than the {MAX_ANCHOR_TXS} the client fetches"
    )]
    TooManyTxs(usize),
    #[error("the RPC's status could not be read: {0}")]
    Status(String),
    #[error("the RPC serves chain {got:?}, the anchor is on {want:?}")]
    ChainId { want: String, got: String },
    #[error("the memos disagree on the number of chunks: {0:?}")]
    ChunkCounts(Vec<u64>),
    #[error("the memos count {chunks} chunks, the anchor names {txs} transactions")]
    ChunksVsTxs { chunks: u64, txs: usize },
    #[error("chunk {chunk} of {chunks} is missing")]
    MissingChunk { chunk: u64, chunks: u64 },
    #[error("chunk {chunk} is anchored twice")]
    DuplicateChunk { chunk: u64 },
    #[error("the anchor says height {anchor}, its last transaction is at height {chain}")]
    Height { anchor: u64, chain: u64 },
}

/// Problems serialize as their messages.
fn as_messages<E: std::fmt::Display, S: Serializer>(v: &[E], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(v.iter().map(ToString::to_string))
}

/// The verdict on one anchoring transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TxVerdict {
    pub hash: String,
    /// Committed with code 0, its bytes hash to its hash, and its memo is this batch's.
    pub ok: bool,
    pub height: Option<u64>,
    pub code: Option<u32>,
    pub memo: Option<String>,
    /// The memo's chunk index and count.
    pub chunk: Option<u64>,
    pub chunks: Option<u64>,
    #[serde(serialize_with = "as_messages")]
    pub problems: Vec<TxProblem>,
}

/// Where the chain RPC's address came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RpcSource {
    /// The tenant named it (`--chain-rpc`).
    Flag,
    /// The node reported it: trusted less, the node is what is being checked.
    Node,
}

impl RpcSource {
    /// A short phrase for the report.
    pub fn describe(self) -> &'static str {
        match self {
            RpcSource::Flag => "from --chain-rpc",
            RpcSource::Node => {
                "reported by the node: trusted less than an RPC you choose with --chain-rpc URL"
            }
        }
    }
}

/// The verdict on one batch's Cosmos anchor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChainCheck {
    /// The chain the anchor names.
    pub chain_id: String,
    pub rpc_url: String,
    pub rpc_source: RpcSource,
    /// The chain id the RPC reports.
    pub rpc_chain_id: Option<String>,
    pub batch_sequence: u64,
    pub merkle_root: Hash,
    /// Every transaction is ok and the anchor as a whole is.
    pub ok: bool,
    pub txs: Vec<TxVerdict>,
    #[serde(serialize_with = "as_messages")]
    pub problems: Vec<AnchorProblem>,
}

/// True for the 64 hex digits of a SHA-256 transaction hash.
fn is_tx_hash(h: &str) -> bool {
    h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The verdict on one transaction from its `/tx` answer (or why it could not be fetched).
pub fn judge_tx(
    hash: &str,
    answer: Result<&Value, String>,
    batch_sequence: u64,
    root: &Hash,
) -> (TxVerdict, Option<AnchorMemo>) {
    let mut v = TxVerdict {
        hash: hash.to_owned(),
        ok: false,
        height: None,
        code: None,
        memo: None,
        chunk: None,
        chunks: None,
        problems: Vec::new(),
    };
    let answer = match answer {
        Ok(a) => a,
        Err(e) => {
            v.problems.push(TxProblem::Fetch(e));
            return (v, None);
        }
    };
    let TxAnswer { hash: got_hash, height, code, log, tx, .. } =
        match TxAnswer::from_response(answer) {
            Ok(parsed) => parsed,
            Err(e) => {
                v.problems.push(TxProblem::Answer(e.to_string()));
                return (v, None);
            }
        };
    v.height = Some(height);
    v.code = Some(code);
    if !got_hash.eq_ignore_ascii_case(hash) {
        v.problems.push(TxProblem::OtherHash { got: got_hash });
    }
    let bytes_hash = tx_hash(&tx);
    if !bytes_hash.eq_ignore_ascii_case(hash) {
        v.problems.push(TxProblem::BytesHash { got: bytes_hash });
    }
    if code != 0 {
        v.problems.push(TxProblem::Failed { code, log });
    }
    let memo = match tx_memo(&tx) {
        Ok(m) => m,
        Err(e) => {
            v.problems.push(e.into());
            return (v, None);
        }
    };
    v.memo = Some(memo.clone());
    let parsed = match memo.parse::<AnchorMemo>() {
        Ok(m) => m,
        Err(e) => {
            v.problems.push(e.into());
            return (v, None);
        }
    };
    v.chunk = Some(parsed.chunk);
    v.chunks = Some(parsed.chunks);
    if parsed.batch_sequence != batch_sequence {
        v.problems.push(TxProblem::Sequence { got: parsed.batch_sequence, want: batch_sequence });
    }
    if parsed.merkle_root != *root {
        v.problems.push(TxProblem::Root { got: parsed.merkle_root, want: *root });
    }
    v.ok = v.problems.is_empty();
    (v, Some(parsed))
}

/// What the chain RPC answered, per call (an `Err` says why a call failed).
#[derive(Debug, Clone)]
pub struct RpcAnswers {
    /// `GET <rpc>/status`.
    pub status: Result<Value, String>,
    /// `GET <rpc>/tx?hash=0x<hash>`, one per anchor transaction in order.
    pub txs: Vec<Result<Value, String>>,
}

/// The verdict on a batch's Cosmos anchor, from what the RPC answered. Pure: no I/O, so recorded
/// answers give the same verdict every time.
pub fn judge(
    anchor: &Anchor,
    batch_sequence: u64,
    root: &Hash,
    rpc_url: &str,
    rpc_source: RpcSource,
    answers: &RpcAnswers,
) -> ChainCheck {
    let mut check = ChainCheck {
        chain_id: anchor.chain_id.clone(),
        rpc_url: rpc_url.to_owned(),
        rpc_source,
        rpc_chain_id: None,
        batch_sequence,
        merkle_root: *root,
        ok: false,
        txs: Vec::new(),
        problems: Vec::new(),
    };
    match &answers.status {
        Ok(s) => {
            let network = s.pointer("/result/node_info/network").and_then(Value::as_str);
            match network {
                Some(n) if n == anchor.chain_id => {}
                Some(n) => check
                    .problems
                    .push(AnchorProblem::ChainId { want: anchor.chain_id.clone(), got: n.into() }),
                None => check.problems.push(AnchorProblem::Status(match s.get("error") {
                    Some(e) => rpc::error_text(e),
                    None => "no result.node_info.network".into(),
                })),
            }
            check.rpc_chain_id = network.map(str::to_owned);
        }
        Err(e) => check.problems.push(AnchorProblem::Status(e.clone())),
    }
    if anchor.tx_hashes.is_empty() {
        check.problems.push(AnchorProblem::NoTxs);
    }
    let mut memos = Vec::new();
    for (i, hash) in anchor.tx_hashes.iter().enumerate() {
        let answer = match answers.txs.get(i) {
            Some(Ok(v)) => Ok(v),
            Some(Err(e)) => Err(e.clone()),
            None => Err("not fetched".to_owned()),
        };
        let (verdict, memo) = judge_tx(hash, answer, batch_sequence, root);
        memos.extend(memo);
        check.txs.push(verdict);
    }
    // Every chunk of the batch, each once: the memos agree on the count, and it is the number
    // of transactions the anchor names.
    let mut counts: Vec<u64> = memos.iter().map(|m| m.chunks).collect();
    counts.sort_unstable();
    counts.dedup();
    match counts.as_slice() {
        [] => {}
        [chunks] => {
            let chunks = *chunks;
            if usize::try_from(chunks).ok() != Some(anchor.tx_hashes.len()) {
                check
                    .problems
                    .push(AnchorProblem::ChunksVsTxs { chunks, txs: anchor.tx_hashes.len() });
            }
            let mut seen: BTreeMap<u64, usize> = BTreeMap::new();
            for m in &memos {
                *seen.entry(m.chunk).or_default() += 1;
            }
            for (&chunk, &n) in &seen {
                if n > 1 {
                    check.problems.push(AnchorProblem::DuplicateChunk { chunk });
                }
            }
            // `chunks` can be as large as the memo says: list at most the transactions' worth.
            let missing = (0..chunks).filter(|c| !seen.contains_key(c));
            for chunk in missing.take(MAX_ANCHOR_TXS) {
                check.problems.push(AnchorProblem::MissingChunk { chunk, chunks });
            }
        }
        many => check.problems.push(AnchorProblem::ChunkCounts(many.to_vec())),
    }
    if let Some(chain) = check.txs.iter().filter_map(|t| t.height).max() {
        if check.txs.iter().all(|t| t.ok) && chain != anchor.height {
            check.problems.push(AnchorProblem::Height { anchor: anchor.height, chain });
        }
    }
    check.ok = check.problems.is_empty() && check.txs.iter().all(|t| t.ok);
    check
}

/// Checks a batch's Cosmos anchor on the chain: fetches the RPC's status and every transaction
/// the anchor names with `get` (an absolute URL → its JSON), then [`judge`]s them. Hashes that
/// are not 64 hex digits are not fetched, and an anchor naming more than [`MAX_ANCHOR_TXS`]
/// transactions is refused without fetching any.
pub fn check_chain_anchor(
    get: impl Fn(&str) -> crate::Result<Value>,
    rpc_url: &str,
    rpc_source: RpcSource,
    anchor: &Anchor,
    batch_sequence: u64,
    root: &Hash,
) -> ChainCheck {
    let base = rpc_url.trim_end_matches('/');
    let fetch = |url: String| match get(&url) {
        Ok(v) => Ok(v),
        // CometBFT answers an RPC error (a tx not found) with HTTP 500 and the JSON-RPC error
        // object: judge that rather than the HTTP status.
        Err(crate::ClientError::Api { detail, .. })
            if serde_json::from_str::<Value>(&detail).is_ok_and(|v| v.get("error").is_some()) =>
        {
            serde_json::from_str(&detail).map_err(|e| e.to_string())
        }
        Err(e) => Err(e.to_string()),
    };
    if anchor.tx_hashes.len() > MAX_ANCHOR_TXS {
        let mut check = judge(
            &Anchor { tx_hashes: Vec::new(), ..anchor.clone() },
            batch_sequence,
            root,
            rpc_url,
            rpc_source,
            &RpcAnswers { status: Err("not asked".into()), txs: Vec::new() },
        );
        check.problems = vec![AnchorProblem::TooManyTxs(anchor.tx_hashes.len())];
        check.ok = false;
        return check;
    }
    let answers = RpcAnswers {
        status: fetch(format!("{base}/status")),
        txs: anchor
            .tx_hashes
            .iter()
            .map(|h| {
                if is_tx_hash(h) {
                    fetch(format!("{base}/tx?hash=0x{h}"))
                } else {
                    Err(TxProblem::BadHash(h.clone()).to_string())
                }
            })
            .collect(),
    };
    judge(anchor, batch_sequence, root, rpc_url, rpc_source, &answers)
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use std::cell::RefCell;

    // Recorded from a fresh `injectived` devnet: batch #1 settled in two chunk transactions
    // (testnet/tests/verify_anchor_devnet.rs makes the same kind of batch).
    const STATUS: &str = include_str!("../testdata/cometbft/status.json");
    const TX0: &str = include_str!("../testdata/cometbft/tx0.json");
    const TX1: &str = include_str!("../testdata/cometbft/tx1.json");
    const NOT_FOUND: &str = include_str!("../testdata/cometbft/tx_not_found.json");
    const HASH0: &str = "4F409F6A47035E345AB518C4DCEC3134AB64D2453EDF7AAD297BCF84F79D987F";
    const HASH1: &str = "6681EFF5F2DF1B1F7AD02358BD9B9521AE49264C1BFC020FBF8864926AA5C82C";
    const ROOT: &str = "4cbeda830477a7f35db8ed9f8d74afd158b33fee8a45a6b0069cfa1b76cd7aea";
    const CHAIN: &str = "leasemesh-devnet-1";
    const RPC: &str = "http://127.0.0.1:26657";

    fn json(s: &str) -> Value {
        serde_json::from_str(s).unwrap()
    }

    fn root() -> Hash {
        Hash::from_hex(ROOT).unwrap()
    }

    fn tx_bytes(answer: &str) -> Vec<u8> {
        let v = json(answer);
        let b64 = v.pointer("/result/tx").and_then(Value::as_str).unwrap();
        base64::engine::general_purpose::STANDARD.decode(b64).unwrap()
    }

    /// The answer with its tx bytes replaced.
    fn with_tx(answer: &str, bytes: &[u8]) -> Value {
        let mut v = json(answer);
        v["result"]["tx"] = base64::engine::general_purpose::STANDARD.encode(bytes).into();
        v
    }

    fn anchor(hashes: &[&str], height: u64) -> Anchor {
        Anchor {
            chain_id: CHAIN.into(),
            tx_hashes: hashes.iter().map(|h| (*h).to_owned()).collect(),
            height,
        }
    }

    fn answers(txs: Vec<Value>) -> RpcAnswers {
        RpcAnswers { status: Ok(json(STATUS)), txs: txs.into_iter().map(Ok).collect() }
    }

    fn judged(a: &Anchor, seq: u64, root: &Hash, answers: &RpcAnswers) -> ChainCheck {
        judge(a, seq, root, RPC, RpcSource::Flag, answers)
    }

    /// Protobuf varint.
    fn varint(mut n: u64, out: &mut Vec<u8>) {
        while n >= 0x80 {
            out.push((n as u8) | 0x80);
            n >>= 7;
        }
        out.push(n as u8);
    }

    /// A length-delimited field.
    fn field(number: u64, bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        varint(number << 3 | 2, &mut out);
        varint(bytes.len() as u64, &mut out);
        out.extend_from_slice(bytes);
        out
    }

    /// A TxRaw whose body has `messages` (field 1), a timeout height (field 3, varint) and `memo`.
    fn tx_with_memo(memo: &[u8]) -> Vec<u8> {
        let mut body = field(1, b"any message");
        body.extend(field(2, memo));
        body.extend([3 << 3, 0x96, 0x01]);
        let mut tx = field(1, &body);
        tx.extend(field(2, b"auth info"));
        tx.extend(field(3, &[7; 64]));
        tx
    }

    #[test]
    fn the_memo_reader_reads_a_real_transaction_and_hand_built_ones() {
        assert_eq!(tx_memo(&tx_bytes(TX0)).unwrap(), format!("lm:v1:1:0/2:{ROOT}"));
        assert_eq!(tx_memo(&tx_bytes(TX1)).unwrap(), format!("lm:v1:1:1/2:{ROOT}"));
        assert_eq!(tx_memo(&tx_with_memo(b"hello")).unwrap(), "hello");
        // Fixed-width fields are skipped; the last memo wins, as protobuf merges.
        let mut body = vec![1 << 3 | 1, 0, 0, 0, 0, 0, 0, 0, 0, 5 << 3 | 5, 0, 0, 0, 0];
        body.extend(field(2, b"first"));
        body.extend(field(2, b"second"));
        assert_eq!(tx_memo(&field(1, &body)).unwrap(), "second");
        // No memo is an empty memo; no body (absent or empty) is an error.
        assert_eq!(tx_memo(&field(1, &field(1, b"msg"))).unwrap(), "");
        assert_eq!(tx_memo(&field(1, &[])), Err(TxDecodeError::NoBody));
        assert_eq!(tx_memo(&[]), Err(TxDecodeError::NoBody));
        assert_eq!(tx_memo(&field(2, b"auth only")), Err(TxDecodeError::NoBody));
    }

    #[test]
    fn bad_protobuf_is_a_typed_error_never_a_panic() {
        let protobuf =
            |r: Result<String, TxDecodeError>| matches!(r, Err(TxDecodeError::Protobuf { .. }));
        // Every truncation of a real transaction fails, but where it ends between the fields of
        // TxRaw (after body_bytes, after auth_info_bytes): that is a shorter valid TxRaw, with
        // the same body, which the hash check refuses.
        let real = tx_bytes(TX0);
        let memo = tx_memo(&real).unwrap();
        let mut whole = 0;
        for len in 1..real.len() {
            match tx_memo(&real[..len]) {
                Ok(m) => {
                    assert_eq!(m, memo);
                    whole += 1;
                }
                Err(e) => assert!(matches!(e, TxDecodeError::Protobuf { .. }), "{len}: {e}"),
            }
        }
        assert_eq!(whole, 2);
        assert!(protobuf(tx_memo(&[0x0a, 0x05, 1, 2])));
        // A length near u64::MAX does not overflow.
        let mut huge = vec![0x0a];
        varint(u64::MAX, &mut huge);
        assert!(protobuf(tx_memo(&huge)));
        // An eleven-byte varint, a truncated varint, field number 0, a group wire type, a
        // varint where bytes belong (in TxRaw and in TxBody), a memo that is not UTF-8.
        let mut eleven = vec![0x08];
        eleven.extend([0xff; 10]);
        eleven.push(0x01);
        for bad in [eleven, vec![0x08, 0xff], vec![0x00, 0x00], vec![0x0b], vec![0x08, 0x01]] {
            assert!(protobuf(tx_memo(&bad)), "{bad:?}");
        }
        assert!(protobuf(tx_memo(&field(1, &[0x10, 0x01]))));
        assert!(protobuf(tx_memo(&tx_with_memo(&[0xff, 0xfe]))));
        // Garbage after a good body still fails: the whole message is read.
        let mut trailing = tx_with_memo(b"m");
        trailing.push(0x0f);
        assert!(tx_memo(&trailing).is_err());

        // Any byte of a real transaction changed, and pseudo-random bytes: an answer each time.
        for i in 0..real.len() {
            for x in [0x00, 0x80, 0xff] {
                let mut t = real.clone();
                t[i] = x;
                let _ = tx_memo(&t);
            }
        }
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        for n in 0..5_000 {
            let bytes: Vec<u8> = (0..n % 64)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    state as u8
                })
                .collect();
            let _ = tx_memo(&bytes);
        }
    }

    #[test]
    fn a_recorded_anchor_checks() {
        let a = anchor(&[HASH0, HASH1], 4);
        let c = judged(&a, 1, &root(), &answers(vec![json(TX0), json(TX1)]));
        assert!(c.ok, "{c:#?}");
        assert_eq!(c.rpc_chain_id.as_deref(), Some(CHAIN));
        assert!(c.problems.is_empty());
        for (k, t) in c.txs.iter().enumerate() {
            assert!(t.ok && t.problems.is_empty(), "{t:?}");
            assert_eq!((t.height, t.code), (Some(4), Some(0)));
            assert_eq!((t.chunk, t.chunks), (Some(k as u64), Some(2)));
            assert_eq!(t.memo, Some(format!("lm:v1:1:{k}/2:{ROOT}")));
        }
        // Lower-case hashes in the anchor are the same transactions.
        let lower = anchor(&[&HASH0.to_lowercase(), &HASH1.to_lowercase()], 4);
        assert!(judged(&lower, 1, &root(), &answers(vec![json(TX0), json(TX1)])).ok);
        // A code of 0 left out of the JSON is 0.
        let mut no_code = json(TX0);
        no_code["result"]["tx_result"].as_object_mut().unwrap().remove("code");
        assert!(judged(&a, 1, &root(), &answers(vec![no_code, json(TX1)])).ok);

        // The JSON report carries the per-transaction verdicts.
        let out = serde_json::to_value(&c).unwrap();
        assert_eq!(out["rpc_source"], "flag");
        assert_eq!(out["txs"][1]["hash"], HASH1);
        assert_eq!(out["txs"][1]["ok"], true);
        assert_eq!(out["txs"][1]["chunk"], 1);
    }

    #[test]
    fn a_wrong_root_or_sequence_is_refused_per_transaction() {
        let a = anchor(&[HASH0, HASH1], 4);
        let c = judged(&a, 1, &Hash::ZERO, &answers(vec![json(TX0), json(TX1)]));
        assert!(!c.ok);
        for t in &c.txs {
            assert_eq!(t.problems, [TxProblem::Root { got: root(), want: Hash::ZERO }]);
        }
        let c = judged(&a, 2, &root(), &answers(vec![json(TX0), json(TX1)]));
        assert!(
            !c.ok && c.txs.iter().all(|t| t.problems == [TxProblem::Sequence { got: 1, want: 2 }])
        );
        let text = serde_json::to_value(&c).unwrap()["txs"][0]["problems"][0].clone();
        assert_eq!(text, "its memo names batch #1, not #2");
    }

    #[test]
    fn a_missing_or_doubled_chunk_is_refused() {
        let short = anchor(&[HASH1], 4);
        let c = judged(&short, 1, &root(), &answers(vec![json(TX1)]));
        assert!(!c.ok);
        assert!(c.txs[0].ok, "the chunk itself is fine: {c:#?}");
        assert_eq!(
            c.problems,
            [
                AnchorProblem::ChunksVsTxs { chunks: 2, txs: 1 },
                AnchorProblem::MissingChunk { chunk: 0, chunks: 2 }
            ]
        );
        let doubled = anchor(&[HASH0, HASH0], 4);
        let c = judged(&doubled, 1, &root(), &answers(vec![json(TX0), json(TX0)]));
        assert_eq!(
            c.problems,
            [
                AnchorProblem::DuplicateChunk { chunk: 0 },
                AnchorProblem::MissingChunk { chunk: 1, chunks: 2 }
            ]
        );
        // Memos that disagree on the chunk count.
        let three = tx_with_memo(format!("lm:v1:1:2/3:{ROOT}").as_bytes());
        let three_hash = tx_hash(&three);
        let mut answer = with_tx(TX1, &three);
        answer["result"]["hash"] = three_hash.clone().into();
        let c = judged(
            &anchor(&[HASH0, &three_hash], 4),
            1,
            &root(),
            &answers(vec![json(TX0), answer]),
        );
        assert!(c.txs.iter().all(|t| t.ok), "{c:#?}");
        assert_eq!(c.problems, [AnchorProblem::ChunkCounts(vec![2, 3])]);
        // No transactions at all.
        let c = judged(&anchor(&[], 0), 1, &root(), &answers(vec![]));
        assert_eq!(c.problems, [AnchorProblem::NoTxs]);
        assert!(!c.ok);
    }

    #[test]
    fn a_failed_tampered_or_absent_transaction_is_refused() {
        let a = anchor(&[HASH0, HASH1], 4);
        // Non-zero code.
        let mut failed = json(TX0);
        failed["result"]["tx_result"]["code"] = 5.into();
        failed["result"]["tx_result"]["log"] = "insufficient funds".into();
        let c = judged(&a, 1, &root(), &answers(vec![failed, json(TX1)]));
        assert_eq!(
            c.txs[0].problems,
            [TxProblem::Failed { code: 5, log: "insufficient funds".into() }]
        );
        assert!(!c.ok && c.txs[1].ok);
        // Bytes that are not the transaction's (a memo naming another root).
        let real = tx_bytes(TX0);
        let mut forged = real.clone();
        let at = forged.windows(ROOT.len()).position(|w| w == ROOT.as_bytes()).unwrap();
        forged[at] = b'0';
        let c = judged(&a, 1, &root(), &answers(vec![with_tx(TX0, &forged), json(TX1)]));
        assert!(matches!(c.txs[0].problems[0], TxProblem::BytesHash { .. }), "{c:#?}");
        assert!(matches!(c.txs[0].problems[1], TxProblem::Root { .. }));
        // Truncated bytes.
        let c = judged(&a, 1, &root(), &answers(vec![with_tx(TX0, &real[..100]), json(TX1)]));
        assert!(c.txs[0]
            .problems
            .iter()
            .any(|p| matches!(p, TxProblem::Decode(TxDecodeError::Protobuf { .. }))));
        assert!(!c.ok);
        // Not base64.
        let mut junk = json(TX0);
        junk["result"]["tx"] = "%%%".into();
        let c = judged(&a, 1, &root(), &answers(vec![junk, json(TX1)]));
        assert!(matches!(&c.txs[0].problems[..], [TxProblem::Answer(_)]));
        // The RPC answers with another transaction than the one asked for.
        let c = judged(&a, 1, &root(), &answers(vec![json(TX1), json(TX0)]));
        assert!(c.txs.iter().all(|t| matches!(t.problems[0], TxProblem::OtherHash { .. })));
        // Not on the chain (the RPC's recorded error), or not reachable.
        let c = judged(&a, 1, &root(), &answers(vec![json(NOT_FOUND), json(TX1)]));
        match &c.txs[0].problems[..] {
            [TxProblem::Answer(e)] => assert!(e.contains("not found"), "{e}"),
            other => panic!("{other:?}"),
        }
        let mut gone = answers(vec![json(TX0)]);
        gone.txs.push(Err("connection refused".into()));
        let c = judged(&a, 1, &root(), &gone);
        assert_eq!(c.txs[1].problems, [TxProblem::Fetch("connection refused".into())]);
        assert!(c.problems.contains(&AnchorProblem::MissingChunk { chunk: 1, chunks: 2 }));
    }

    #[test]
    fn another_chain_or_height_is_refused() {
        let other = Anchor { chain_id: "injective-1".into(), ..anchor(&[HASH0, HASH1], 4) };
        let c = judged(&other, 1, &root(), &answers(vec![json(TX0), json(TX1)]));
        assert_eq!(
            c.problems,
            [AnchorProblem::ChainId { want: "injective-1".into(), got: CHAIN.into() }]
        );
        let c =
            judged(&anchor(&[HASH0, HASH1], 9), 1, &root(), &answers(vec![json(TX0), json(TX1)]));
        assert_eq!(c.problems, [AnchorProblem::Height { anchor: 9, chain: 4 }]);
        let mut no_status = answers(vec![json(TX0), json(TX1)]);
        no_status.status = Err("timed out".into());
        let c = judged(&anchor(&[HASH0, HASH1], 4), 1, &root(), &no_status);
        assert_eq!(c.problems, [AnchorProblem::Status("timed out".into())]);
        assert!(!c.ok);
    }

    #[test]
    fn check_chain_anchor_asks_the_rpc_for_each_named_transaction() {
        let asked = RefCell::new(Vec::new());
        let fake = |url: &str| -> crate::Result<Value> {
            asked.borrow_mut().push(url.to_owned());
            let body = match url.strip_prefix(RPC) {
                Some("/status") => STATUS,
                Some(q) if q == format!("/tx?hash=0x{HASH0}") => TX0,
                Some(q) if q == format!("/tx?hash=0x{HASH1}") => TX1,
                _ => {
                    return Err(crate::ClientError::Api {
                        url: url.into(),
                        status: 500,
                        code: "error".into(),
                        detail: NOT_FOUND.into(),
                    })
                }
            };
            Ok(json(body))
        };
        let a = anchor(&[HASH0, HASH1], 4);
        let c = check_chain_anchor(fake, &format!("{RPC}/"), RpcSource::Node, &a, 1, &root());
        assert!(c.ok, "{c:#?}");
        assert_eq!(c.rpc_source, RpcSource::Node);
        assert_eq!(
            *asked.borrow(),
            [
                format!("{RPC}/status"),
                format!("{RPC}/tx?hash=0x{HASH0}"),
                format!("{RPC}/tx?hash=0x{HASH1}")
            ]
        );

        // A transaction the chain does not have: the RPC's own error is reported.
        let unknown = "AB".repeat(32);
        let c = check_chain_anchor(fake, RPC, RpcSource::Flag, &anchor(&[&unknown], 4), 1, &root());
        match &c.txs[0].problems[..] {
            [TxProblem::Answer(e)] => {
                assert!(e.contains(&format!("tx ({unknown}) not found")), "{e}")
            }
            other => panic!("{other:?}"),
        }

        // A hash that is not one is never put in a URL.
        asked.borrow_mut().clear();
        let bad = anchor(&["../status?x=", HASH1], 4);
        let c = check_chain_anchor(fake, RPC, RpcSource::Flag, &bad, 1, &root());
        assert!(
            matches!(&c.txs[0].problems[..], [TxProblem::Fetch(e)] if e.contains("not a 64-digit"))
        );
        assert_eq!(asked.borrow().len(), 2);
        // Too many transactions: nothing is fetched.
        asked.borrow_mut().clear();
        let many: Vec<&str> = vec![HASH0; MAX_ANCHOR_TXS + 1];
        let c = check_chain_anchor(fake, RPC, RpcSource::Flag, &anchor(&many, 4), 1, &root());
        assert_eq!(c.problems, [AnchorProblem::TooManyTxs(MAX_ANCHOR_TXS + 1)]);
        assert!(!c.ok && asked.borrow().is_empty());
    }
}
