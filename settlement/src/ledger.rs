//! `LocalLedger`: the embedded default settlement backend. Accounts, balances, spend grants and
//! anchored batches in sled; each anchored batch is one ledger entry, hash-chained to the one
//! before, applied atomically or not at all.
//!
//! An entry is the postcard encoding of a [`LedgerEntry`] (batch id, sequence, Merkle root, the
//! settler's address and the batch's netted payments); its hash is the lower-case hex BLAKE3 of
//! those bytes. [`Anchor::prepare`] builds it without touching the ledger;
//! [`Anchor::submit`] applies it in one sled transaction: every payment debits the tenant,
//! spends the tenant's grant to the settler, credits the provider, or, if any payment fails (a
//! balance or a grant too small), nothing changes and the entry is recorded as rejected.
//! Submitting an entry already applied does nothing, so the journal can resubmit freely.
//!
//! # sled trees (all under the `ledger/` prefix)
//! | tree               | key                                   | value                             |
//! |--------------------|---------------------------------------|-----------------------------------|
//! | `ledger/balances`  | postcard `(address, denom)`           | `u128` big-endian                 |
//! | `ledger/grants`    | postcard `(tenant, settler, denom)`   | remaining limit, `u128` big-endian|
//! | `ledger/entries`   | entry hash (hex, ASCII)               | postcard [`AnchoredEntry`]        |
//! | `ledger/heights`   | height, `u64` big-endian (from 1)     | entry hash                        |
//! | `ledger/batches`   | batch id (32 bytes)                   | entry hash                        |
//! | `ledger/rejected`  | entry hash                            | postcard `(code, log)`            |
//! | `ledger/meta`      | `head`                                | postcard `(height, entry hash)`   |
//!
//! Grants behave as Cosmos `SendAuthorization`s: a grant spent down to zero is deleted.

use std::path::Path;

use leasemesh_protocol::codec::{from_canonical, to_canonical};
use leasemesh_protocol::{
    amount_serde, Anchor as AnchorRecord, Coin, Hash, Id, SettlementBatch, SettlementRecord, Signed,
};
use serde::{Deserialize, Serialize};
use sled::transaction::{ConflictableTransactionError, TransactionError, TransactionalTree};
use sled::Transactional;

use crate::anchor::{Anchor, AnchorError, Confirmation, PreparedAnchor, PreparedTx};

/// The chain id anchors on the embedded ledger carry.
pub const LOCAL_CHAIN_ID: &str = "local";
/// Largest ledger entry accepted by `submit`, in bytes (a batch's payments are far smaller).
pub const MAX_ENTRY_SIZE: usize = 16 * 1024 * 1024;

/// Rejection codes, borrowed from the Cosmos SDK's so both backends read alike.
pub const CODE_INSUFFICIENT_FUNDS: u32 = 5;
pub const CODE_UNAUTHORIZED: u32 = 4;
pub const CODE_OVERFLOW: u32 = 11;
pub const CODE_CONFLICT: u32 = 19;

const HEAD: &[u8] = b"head";

/// One netted transfer of a ledger entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transfer {
    pub from: String,
    pub to: String,
    pub denom: String,
    #[serde(with = "amount_serde")]
    pub amount: u128,
}

/// The bytes `prepare` makes and `submit` applies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerEntry {
    pub batch_id: Id,
    pub batch_sequence: u64,
    pub merkle_root: Hash,
    /// Spends the tenants' grants: must be the grantee of every payment's tenant.
    pub settler_address: String,
    /// In batch record order.
    pub payments: Vec<Transfer>,
}

/// An applied entry as stored, with its place in the chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnchoredEntry {
    pub height: u64,
    /// Hash of the entry before, empty for the first.
    pub prev_hash: String,
    /// The exact bytes that were submitted.
    pub bytes: Vec<u8>,
}

/// What went wrong with the ledger's store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LedgerError {
    #[error("ledger store: {0}")]
    Store(#[from] sled::Error),
    #[error("ledger store is corrupt: {0}; restore it from a backup")]
    Corrupt(String),
    #[error("{address}'s {denom} balance would overflow 128 bits")]
    Overflow { address: String, denom: String },
}

impl From<LedgerError> for AnchorError {
    fn from(e: LedgerError) -> AnchorError {
        AnchorError::Store(e.to_string())
    }
}

/// Why an entry was refused; nothing was applied.
#[derive(Debug, Clone)]
struct Refusal {
    code: u32,
    log: String,
}

/// The embedded ledger. Cheap to clone (sled handles).
#[derive(Debug, Clone)]
pub struct LocalLedger {
    db: sled::Db,
    settler_address: String,
    balances: sled::Tree,
    grants: sled::Tree,
    entries: sled::Tree,
    heights: sled::Tree,
    batches: sled::Tree,
    rejected: sled::Tree,
    meta: sled::Tree,
}

fn u128_bytes(v: u128) -> [u8; 16] {
    v.to_be_bytes()
}

fn read_u128(bytes: Option<sled::IVec>) -> Result<u128, LedgerError> {
    match bytes {
        None => Ok(0),
        Some(b) => <[u8; 16]>::try_from(b.as_ref())
            .map(u128::from_be_bytes)
            .map_err(|_| LedgerError::Corrupt(format!("amount of {} bytes", b.len()))),
    }
}

fn balance_key(address: &str, denom: &str) -> Vec<u8> {
    to_canonical(&(address, denom))
}

fn grant_key(tenant: &str, settler: &str, denom: &str) -> Vec<u8> {
    to_canonical(&(tenant, settler, denom))
}

/// Lower-case hex BLAKE3 of an entry's bytes.
pub fn entry_hash(bytes: &[u8]) -> String {
    hex::encode(blake3::hash(bytes).as_bytes())
}

impl LocalLedger {
    /// Opens (or creates) a ledger in its own sled database at `path`. `settler_address` is the
    /// address that spends tenants' grants when this ledger prepares entries.
    pub fn open(
        path: impl AsRef<Path>,
        settler_address: impl Into<String>,
    ) -> Result<Self, LedgerError> {
        let db = sled::open(path)?;
        Self::with_db(&db, settler_address)
    }

    /// Uses the `ledger/*` trees of an open sled database (a node keeps one database).
    pub fn with_db(db: &sled::Db, settler_address: impl Into<String>) -> Result<Self, LedgerError> {
        Ok(LocalLedger {
            db: db.clone(),
            settler_address: settler_address.into(),
            balances: db.open_tree("ledger/balances")?,
            grants: db.open_tree("ledger/grants")?,
            entries: db.open_tree("ledger/entries")?,
            heights: db.open_tree("ledger/heights")?,
            batches: db.open_tree("ledger/batches")?,
            rejected: db.open_tree("ledger/rejected")?,
            meta: db.open_tree("ledger/meta")?,
        })
    }

    pub fn settler_address(&self) -> &str {
        &self.settler_address
    }

    /// Adds `coin` to `address` (a faucet for tests, the demo and operators). Returns the new
    /// balance.
    pub fn fund(&self, address: &str, coin: &Coin) -> Result<u128, LedgerError> {
        let key = balance_key(address, &coin.denom);
        let mut result = Ok(0);
        self.balances.fetch_and_update(&key, |old| {
            let keep = old.map(<[u8]>::to_vec);
            let old = match read_u128(old.map(sled::IVec::from)) {
                Ok(v) => v,
                Err(e) => {
                    result = Err(e);
                    return keep;
                }
            };
            match old.checked_add(coin.amount) {
                Some(new) => {
                    result = Ok(new);
                    Some(u128_bytes(new).to_vec())
                }
                None => {
                    result = Err(LedgerError::Overflow {
                        address: address.into(),
                        denom: coin.denom.clone(),
                    });
                    keep
                }
            }
        })?;
        self.db.flush()?;
        result
    }

    /// Sets the spend limit `tenant` grants `settler` in `limit.denom` (replacing any earlier
    /// one); a zero limit revokes the grant.
    pub fn set_grant(&self, tenant: &str, settler: &str, limit: &Coin) -> Result<(), LedgerError> {
        let key = grant_key(tenant, settler, &limit.denom);
        if limit.amount == 0 {
            self.grants.remove(key)?;
        } else {
            self.grants.insert(key, &u128_bytes(limit.amount))?;
        }
        self.db.flush()?;
        Ok(())
    }

    pub fn balance(&self, address: &str, denom: &str) -> Result<u128, LedgerError> {
        read_u128(self.balances.get(balance_key(address, denom))?)
    }

    /// Every non-zero balance of `address`, sorted by denom.
    pub fn balances(&self, address: &str) -> Result<Vec<Coin>, LedgerError> {
        let mut out = Vec::new();
        for kv in self.balances.scan_prefix(to_canonical(&address)) {
            let (k, v) = kv?;
            let (addr, denom): (String, String) = postcard::from_bytes(&k)
                .map_err(|e| LedgerError::Corrupt(format!("balance key: {e}")))?;
            let amount = read_u128(Some(v))?;
            if addr == address && amount > 0 {
                out.push(Coin::new(denom, amount));
            }
        }
        out.sort();
        Ok(out)
    }

    /// The remaining limit `tenant` grants `settler` in `denom`; `None` if there is no grant.
    pub fn grant(
        &self,
        tenant: &str,
        settler: &str,
        denom: &str,
    ) -> Result<Option<u128>, LedgerError> {
        self.grants.get(grant_key(tenant, settler, denom))?.map(|v| read_u128(Some(v))).transpose()
    }

    /// What `settler` can take from `tenant` in `denom` now: the lesser of the balance and the
    /// remaining grant (zero without a grant). An entry whose payments from `tenant` sum to no
    /// more than this cannot be refused for that tenant; one that asks more is refused whole.
    pub fn spendable(&self, tenant: &str, settler: &str, denom: &str) -> Result<u128, LedgerError> {
        let grant = self.grant(tenant, settler, denom)?.unwrap_or(0);
        Ok(self.balance(tenant, denom)?.min(grant))
    }

    /// Height and hash of the last applied entry.
    pub fn head(&self) -> Result<Option<(u64, String)>, LedgerError> {
        self.meta
            .get(HEAD)?
            .map(|v| {
                postcard::from_bytes(&v).map_err(|e| LedgerError::Corrupt(format!("head: {e}")))
            })
            .transpose()
    }

    /// An applied entry by hash.
    pub fn entry(&self, hash: &str) -> Result<Option<AnchoredEntry>, LedgerError> {
        self.entries
            .get(hash.as_bytes())?
            .map(|v| {
                postcard::from_bytes(&v).map_err(|e| LedgerError::Corrupt(format!("entry: {e}")))
            })
            .transpose()
    }

    /// The entry hash a batch was anchored under.
    pub fn entry_for_batch(&self, batch_id: &Id) -> Result<Option<String>, LedgerError> {
        Ok(self.batches.get(batch_id.as_bytes())?.map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    /// Walks the chain from height 1 to the head: each entry's bytes hash to its key, each
    /// names the one before. Returns the number of entries.
    pub fn verify_chain(&self) -> Result<u64, LedgerError> {
        let Some((head_height, head_hash)) = self.head()? else { return Ok(0) };
        let mut prev = String::new();
        for height in 1..=head_height {
            let hash = self
                .heights
                .get(height.to_be_bytes())?
                .map(|v| String::from_utf8_lossy(&v).into_owned())
                .ok_or_else(|| LedgerError::Corrupt(format!("no entry at height {height}")))?;
            let e = self
                .entry(&hash)?
                .ok_or_else(|| LedgerError::Corrupt(format!("entry {hash} missing")))?;
            if e.height != height || e.prev_hash != prev || entry_hash(&e.bytes) != hash {
                return Err(LedgerError::Corrupt(format!("chain broken at height {height}")));
            }
            prev = hash;
        }
        if prev != head_hash {
            return Err(LedgerError::Corrupt("head does not match the last entry".into()));
        }
        Ok(head_height)
    }

    pub fn flush(&self) -> Result<(), LedgerError> {
        self.db.flush()?;
        Ok(())
    }

    /// The entry for a batch: its netted payments, paid by the tenants to the providers.
    pub fn entry_for(&self, batch: &Signed<SettlementBatch>) -> LedgerEntry {
        let payments = batch
            .body
            .records
            .iter()
            .filter_map(|r| match r {
                SettlementRecord::Payment { tenant_address, provider_address, denom, amount } => {
                    Some(Transfer {
                        from: tenant_address.clone(),
                        to: provider_address.clone(),
                        denom: denom.clone(),
                        amount: *amount,
                    })
                }
                _ => None,
            })
            .collect();
        LedgerEntry {
            batch_id: batch.id(),
            batch_sequence: batch.body.sequence,
            merkle_root: batch.body.merkle_root,
            settler_address: self.settler_address.clone(),
            payments,
        }
    }

    /// Applies an entry atomically. `Ok(height)` if applied now or before.
    fn apply(&self, hash: &str, bytes: &[u8], entry: &LedgerEntry) -> Result<u64, ApplyError> {
        let trees = (
            &self.balances,
            &self.grants,
            &self.entries,
            &self.heights,
            &self.batches,
            &self.rejected,
            &self.meta,
        );
        let result =
            trees.transaction(|(balances, grants, entries, heights, batches, rejected, meta)| {
                if let Some(done) = entries.get(hash.as_bytes())? {
                    let done: AnchoredEntry = postcard::from_bytes(&done)
                        .map_err(|e| abort(0, format!("stored entry {hash} is corrupt: {e}")))?;
                    return Ok(done.height);
                }
                if let Some(other) = batches.get(entry.batch_id.as_bytes())? {
                    return Err(abort(
                        CODE_CONFLICT,
                        format!(
                            "batch {} was already anchored as entry {}",
                            entry.batch_id,
                            String::from_utf8_lossy(&other)
                        ),
                    ));
                }
                for p in &entry.payments {
                    pay(balances, grants, &entry.settler_address, p)?;
                }
                let head: Option<(u64, String)> = match meta.get(HEAD)? {
                    Some(v) => Some(
                        postcard::from_bytes(&v)
                            .map_err(|e| abort(0, format!("ledger head is corrupt: {e}")))?,
                    ),
                    None => None,
                };
                let (height, prev_hash) = match head {
                    Some((h, prev)) => (h + 1, prev),
                    None => (1, String::new()),
                };
                let stored = AnchoredEntry { height, prev_hash, bytes: bytes.to_vec() };
                entries.insert(hash.as_bytes(), to_canonical(&stored))?;
                heights.insert(&height.to_be_bytes(), hash.as_bytes())?;
                batches.insert(entry.batch_id.as_bytes(), hash.as_bytes())?;
                meta.insert(HEAD, to_canonical(&(height, hash)))?;
                rejected.remove(hash.as_bytes())?;
                Ok(height)
            });
        match result {
            Ok(height) => {
                self.db.flush().map_err(ApplyError::Store)?;
                Ok(height)
            }
            Err(TransactionError::Abort(r)) => Err(ApplyError::Refused(r)),
            Err(TransactionError::Storage(e)) => Err(ApplyError::Store(e)),
        }
    }
}

enum ApplyError {
    Refused(Refusal),
    Store(sled::Error),
}

fn abort(code: u32, log: String) -> ConflictableTransactionError<Refusal> {
    ConflictableTransactionError::Abort(Refusal { code, log })
}

fn tx_u128(v: Option<sled::IVec>) -> Result<u128, ConflictableTransactionError<Refusal>> {
    read_u128(v).map_err(|e| abort(0, e.to_string()))
}

/// One transfer inside the entry's transaction.
fn pay(
    balances: &TransactionalTree,
    grants: &TransactionalTree,
    settler: &str,
    p: &Transfer,
) -> Result<(), ConflictableTransactionError<Refusal>> {
    let from_key = balance_key(&p.from, &p.denom);
    let have = tx_u128(balances.get(&from_key)?)?;
    let left = have.checked_sub(p.amount).ok_or_else(|| {
        abort(
            CODE_INSUFFICIENT_FUNDS,
            format!("{} has {}{} but owes {} {}{}", p.from, have, p.denom, p.to, p.amount, p.denom),
        )
    })?;
    let g_key = grant_key(&p.from, settler, &p.denom);
    let limit = match grants.get(&g_key)? {
        Some(v) => tx_u128(Some(v))?,
        None => {
            return Err(abort(
                CODE_UNAUTHORIZED,
                format!("{} has granted {settler} no {} spend limit", p.from, p.denom),
            ))
        }
    };
    let limit_left = limit.checked_sub(p.amount).ok_or_else(|| {
        abort(
            CODE_UNAUTHORIZED,
            format!(
                "{}'s grant to {settler} has {}{} left, {} {}{} needed",
                p.from, limit, p.denom, p.to, p.amount, p.denom
            ),
        )
    })?;
    balances.insert(from_key, &u128_bytes(left))?;
    if limit_left == 0 {
        grants.remove(g_key)?;
    } else {
        grants.insert(g_key, &u128_bytes(limit_left))?;
    }
    let to_key = balance_key(&p.to, &p.denom);
    let to_have = tx_u128(balances.get(&to_key)?)?;
    let to_new = to_have.checked_add(p.amount).ok_or_else(|| {
        abort(CODE_OVERFLOW, format!("{}'s {} balance would overflow", p.to, p.denom))
    })?;
    balances.insert(to_key, &u128_bytes(to_new))?;
    Ok(())
}

fn single_tx(prepared: &PreparedAnchor) -> Result<&PreparedTx, AnchorError> {
    match prepared.txs.as_slice() {
        [tx] => Ok(tx),
        txs => Err(AnchorError::Invalid(format!(
            "a local ledger entry is one transaction, got {}",
            txs.len()
        ))),
    }
}

impl Anchor for LocalLedger {
    async fn prepare(
        &mut self,
        batch: &Signed<SettlementBatch>,
    ) -> Result<PreparedAnchor, AnchorError> {
        let bytes = to_canonical(&self.entry_for(batch));
        let hash = entry_hash(&bytes);
        Ok(PreparedAnchor {
            batch_sequence: batch.body.sequence,
            txs: vec![PreparedTx { chunk: 0, bytes, hash }],
        })
    }

    async fn submit(&mut self, prepared: &PreparedAnchor) -> Result<(), AnchorError> {
        let tx = single_tx(prepared)?;
        if entry_hash(&tx.bytes) != tx.hash {
            return Err(AnchorError::Invalid(format!("entry bytes do not hash to {}", tx.hash)));
        }
        let entry: LedgerEntry = from_canonical("ledger entry", &tx.bytes, MAX_ENTRY_SIZE)
            .map_err(|e| AnchorError::Invalid(e.to_string()))?;
        match self.apply(&tx.hash, &tx.bytes, &entry) {
            Ok(height) => {
                tracing::info!(
                    entry = %tx.hash, height, sequence = entry.batch_sequence,
                    payments = entry.payments.len(), "ledger entry applied"
                );
                Ok(())
            }
            Err(ApplyError::Refused(Refusal { code, log })) => {
                tracing::warn!(
                    entry = %tx.hash, sequence = entry.batch_sequence, code, %log,
                    "ledger entry rejected; no payment of the batch was applied"
                );
                self.rejected
                    .insert(tx.hash.as_bytes(), to_canonical(&(code, log.as_str())))
                    .map_err(LedgerError::from)?;
                self.db.flush().map_err(LedgerError::from)?;
                Err(AnchorError::Rejected { code, log })
            }
            Err(ApplyError::Store(e)) => Err(AnchorError::Store(e.to_string())),
        }
    }

    async fn confirm(&mut self, prepared: &PreparedAnchor) -> Result<Confirmation, AnchorError> {
        let tx = single_tx(prepared)?;
        if let Some(e) = self.entry(&tx.hash)? {
            return Ok(Confirmation::Final(AnchorRecord {
                chain_id: LOCAL_CHAIN_ID.into(),
                tx_hashes: vec![tx.hash.clone()],
                height: e.height,
            }));
        }
        match self.rejected.get(tx.hash.as_bytes()).map_err(LedgerError::from)? {
            Some(v) => {
                let (code, log): (u32, String) = postcard::from_bytes(&v)
                    .map_err(|e| AnchorError::Store(format!("rejection record: {e}")))?;
                Ok(Confirmation::Rejected { code, log })
            }
            None => Ok(Confirmation::Pending),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::{build_batch, BatchHeader};
    use crate::samples;
    use leasemesh_protocol::samples::settler_key;

    const SETTLER: &str = "settler";

    fn ledger() -> (tempfile::TempDir, LocalLedger) {
        let dir = tempfile::tempdir().unwrap();
        let l = LocalLedger::open(dir.path().join("ledger"), SETTLER).unwrap();
        (dir, l)
    }

    /// A batch paying `amounts[i]` from tenant-00i to provider-000 (uakt).
    fn batch(sequence: u64, prev: Id, amounts: &[u128]) -> Signed<SettlementBatch> {
        let records: Vec<SettlementRecord> = amounts
            .iter()
            .enumerate()
            .map(|(i, &amount)| SettlementRecord::Payment {
                tenant_address: format!("tenant-{i:03}"),
                provider_address: "provider-000".into(),
                denom: "uakt".into(),
                amount,
            })
            .collect();
        let mut body = build_batch(
            &BatchHeader {
                settler: settler_key().public(),
                sequence,
                prev_batch: prev,
                created_at_ms: 1,
            },
            &[],
        )
        .unwrap();
        body.merkle_root = leasemesh_protocol::merkle::root(&records);
        body.records = records;
        Signed::sign(body, &settler_key())
    }

    fn fund_and_grant(l: &LocalLedger, tenant: &str, balance: u128, grant: u128) {
        l.fund(tenant, &Coin::new("uakt", balance)).unwrap();
        l.set_grant(tenant, SETTLER, &Coin::new("uakt", grant)).unwrap();
    }

    #[tokio::test]
    async fn applies_once_however_often_submitted() {
        let (_d, mut l) = ledger();
        fund_and_grant(&l, "tenant-000", 1000, 500);
        fund_and_grant(&l, "tenant-001", 1000, 700);
        let b = batch(1, Hash::ZERO, &[300, 700]);
        let p = l.prepare(&b).await.unwrap();
        assert_eq!(p, l.prepare(&b).await.unwrap(), "prepare is deterministic");
        assert_eq!(l.confirm(&p).await.unwrap(), Confirmation::Pending);
        for _ in 0..3 {
            l.submit(&p).await.unwrap();
        }
        assert_eq!(l.balance("tenant-000", "uakt").unwrap(), 700);
        assert_eq!(l.balance("tenant-001", "uakt").unwrap(), 300);
        assert_eq!(l.balance("provider-000", "uakt").unwrap(), 1000);
        assert_eq!(l.grant("tenant-000", SETTLER, "uakt").unwrap(), Some(200));
        // Spent to zero: deleted, as a Cosmos grant is.
        assert_eq!(l.grant("tenant-001", SETTLER, "uakt").unwrap(), None);
        match l.confirm(&p).await.unwrap() {
            Confirmation::Final(a) => {
                assert_eq!((a.chain_id.as_str(), a.height), (LOCAL_CHAIN_ID, 1));
                assert_eq!(a.tx_hashes, vec![p.txs[0].hash.clone()]);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(l.verify_chain().unwrap(), 1);
        assert_eq!(l.balances("provider-000").unwrap(), vec![Coin::new("uakt", 1000)]);
    }

    #[tokio::test]
    async fn a_failing_payment_applies_nothing() {
        let (_d, mut l) = ledger();
        fund_and_grant(&l, "tenant-000", 1000, 1000);
        fund_and_grant(&l, "tenant-001", 100, 1000);
        let b = batch(1, Hash::ZERO, &[300, 700]);
        let p = l.prepare(&b).await.unwrap();
        match l.submit(&p).await {
            Err(AnchorError::Rejected { code, log }) => {
                assert_eq!(code, CODE_INSUFFICIENT_FUNDS);
                assert!(log.contains("tenant-001 has 100uakt"), "{log}");
            }
            other => panic!("{other:?}"),
        }
        // tenant-000's payment came first in the transaction and was rolled back.
        assert_eq!(l.balance("tenant-000", "uakt").unwrap(), 1000);
        assert_eq!(l.balance("provider-000", "uakt").unwrap(), 0);
        assert_eq!(l.grant("tenant-000", SETTLER, "uakt").unwrap(), Some(1000));
        assert!(matches!(l.confirm(&p).await.unwrap(), Confirmation::Rejected { code: 5, .. }));
        assert_eq!(l.head().unwrap(), None);

        // Funded later, the same bytes go through.
        l.fund("tenant-001", &Coin::new("uakt", 600)).unwrap();
        l.submit(&p).await.unwrap();
        assert_eq!(l.balance("provider-000", "uakt").unwrap(), 1000);
        assert!(matches!(l.confirm(&p).await.unwrap(), Confirmation::Final(_)));
    }

    #[tokio::test]
    async fn grants_bound_what_the_settler_spends() {
        let (_d, mut l) = ledger();
        l.fund("tenant-000", &Coin::new("uakt", 1000)).unwrap();
        let p = l.prepare(&batch(1, Hash::ZERO, &[10])).await.unwrap();
        assert!(matches!(
            l.submit(&p).await,
            Err(AnchorError::Rejected { code: CODE_UNAUTHORIZED, .. })
        ));
        l.set_grant("tenant-000", SETTLER, &Coin::new("uakt", 9)).unwrap();
        assert!(matches!(
            l.submit(&p).await,
            Err(AnchorError::Rejected { code: CODE_UNAUTHORIZED, .. })
        ));
        // A grant to someone else does not count.
        l.set_grant("tenant-000", "mallory", &Coin::new("uakt", 1000)).unwrap();
        assert!(l.submit(&p).await.is_err());
        // What the settler may take is the lesser of balance and grant; the entry asks for 10.
        assert_eq!(l.spendable("tenant-000", SETTLER, "uakt").unwrap(), 9);
        l.set_grant("tenant-000", SETTLER, &Coin::new("uakt", 10)).unwrap();
        assert_eq!(l.spendable("tenant-000", SETTLER, "uakt").unwrap(), 10);
        assert_eq!(l.spendable("tenant-000", SETTLER, "other").unwrap(), 0);
        assert_eq!(l.spendable("nobody", SETTLER, "uakt").unwrap(), 0);
        l.submit(&p).await.unwrap();
        assert_eq!(l.balance("tenant-000", "uakt").unwrap(), 990);
        assert_eq!(l.spendable("tenant-000", SETTLER, "uakt").unwrap(), 0, "grant spent");
        l.set_grant("tenant-000", SETTLER, &Coin::new("uakt", 5000)).unwrap();
        assert_eq!(l.spendable("tenant-000", SETTLER, "uakt").unwrap(), 990, "balance bounds it");
    }

    #[tokio::test]
    async fn entries_chain_and_tampering_is_refused() {
        let (_d, mut l) = ledger();
        fund_and_grant(&l, "tenant-000", 1000, 1000);
        let b1 = batch(1, Hash::ZERO, &[1]);
        let b2 = batch(2, b1.id(), &[2]);
        let p1 = l.prepare(&b1).await.unwrap();
        let p2 = l.prepare(&b2).await.unwrap();
        l.submit(&p1).await.unwrap();
        l.submit(&p2).await.unwrap();
        assert_eq!(l.verify_chain().unwrap(), 2);
        let e2 = l.entry(&p2.txs[0].hash).unwrap().unwrap();
        assert_eq!((e2.height, e2.prev_hash.as_str()), (2, p1.txs[0].hash.as_str()));
        assert_eq!(l.entry_for_batch(&b2.id()).unwrap(), Some(p2.txs[0].hash.clone()));

        let mut bad = p2.clone();
        let last = bad.txs[0].bytes.len() - 1;
        bad.txs[0].bytes[last] ^= 1;
        assert!(matches!(l.submit(&bad).await, Err(AnchorError::Invalid(_))));
        // The same batch under other bytes (another settler address) cannot pay again.
        let mut other = LocalLedger::with_db(&l.db, "other-settler").unwrap();
        l.set_grant("tenant-000", "other-settler", &Coin::new("uakt", 1000)).unwrap();
        let p2b = other.prepare(&b2).await.unwrap();
        assert!(matches!(
            other.submit(&p2b).await,
            Err(AnchorError::Rejected { code: CODE_CONFLICT, .. })
        ));
        assert_eq!(l.balance("tenant-000", "uakt").unwrap(), 997);
    }

    #[test]
    fn fund_overflow_is_refused_and_changes_nothing() {
        let (_d, l) = ledger();
        l.fund("a", &Coin::new("uakt", u128::MAX)).unwrap();
        assert!(matches!(l.fund("a", &Coin::new("uakt", 1)), Err(LedgerError::Overflow { .. })));
        assert_eq!(l.balance("a", "uakt").unwrap(), u128::MAX);
    }

    #[tokio::test]
    async fn prepares_the_payments_of_a_sample_batch() {
        let (_d, mut l) = ledger();
        let b = samples::crash_test_fleet().signed_batch().unwrap();
        let p = l.prepare(&b).await.unwrap();
        let entry: LedgerEntry =
            from_canonical("ledger entry", &p.txs[0].bytes, MAX_ENTRY_SIZE).unwrap();
        assert_eq!(entry.batch_id, b.id());
        assert_eq!(entry.merkle_root, b.body.merkle_root);
        let total: u128 = entry.payments.iter().map(|t| t.amount).sum();
        let paid: u128 = crate::batch::payments(&b.body).iter().map(|(_, a)| a).sum();
        assert_eq!(total, paid);
        assert!(total > 0);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(40))]

        /// A batch applies completely or not at all: either every balance and grant moved by
        /// exactly the batch's amounts, or nothing moved; money is never created or destroyed.
        #[test]
        fn all_or_nothing_and_supply_conserved(
            funds in proptest::collection::vec(0u128..2_000, 4),
            grants in proptest::collection::vec(0u128..2_000, 4),
            pays in proptest::collection::vec((0usize..4, 0usize..3, 1u128..800), 1..8),
        ) {
            let (_d, mut l) = ledger();
            let tenants: Vec<String> = (0..4).map(|i| format!("tenant-{i:03}")).collect();
            let providers: Vec<String> = (0..3).map(|i| format!("provider-{i:03}")).collect();
            for (i, t) in tenants.iter().enumerate() {
                fund_and_grant(&l, t, funds[i], grants[i]);
            }
            let mut net = std::collections::BTreeMap::new();
            for (t, p, a) in &pays {
                *net.entry((tenants[*t].clone(), providers[*p].clone())).or_insert(0u128) += a;
            }
            let records: Vec<SettlementRecord> = net
                .iter()
                .map(|((t, p), a)| SettlementRecord::Payment {
                    tenant_address: t.clone(),
                    provider_address: p.clone(),
                    denom: "uakt".into(),
                    amount: *a,
                })
                .collect();
            let mut body = build_batch(
                &BatchHeader { settler: settler_key().public(), sequence: 1, prev_batch: Hash::ZERO, created_at_ms: 1 },
                &[],
            ).unwrap();
            body.merkle_root = leasemesh_protocol::merkle::root(&records);
            body.records = records;
            let b = Signed::sign(body, &settler_key());
            let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
            let result = rt.block_on(async {
                let p = l.prepare(&b).await?;
                l.submit(&p).await
            });
            let owed = |i: usize| -> u128 {
                net.iter().filter(|((t, _), _)| *t == tenants[i]).map(|(_, a)| a).sum()
            };
            let feasible = (0..4).all(|i| owed(i) <= funds[i] && (owed(i) == 0 || owed(i) <= grants[i]));
            proptest::prop_assert_eq!(result.is_ok(), feasible, "{:?}", result);
            let k = u128::from(feasible);
            let mut supply = 0;
            for (i, t) in tenants.iter().enumerate() {
                let bal = l.balance(t, "uakt").unwrap();
                proptest::prop_assert_eq!(bal, funds[i] - k * owed(i));
                let g = l.grant(t, SETTLER, "uakt").unwrap().unwrap_or(0);
                proptest::prop_assert_eq!(g, grants[i] - k * owed(i));
                supply += bal;
            }
            for p in &providers {
                let earned: u128 = net.iter().filter(|((_, q), _)| q == p).map(|(_, a)| a).sum();
                let bal = l.balance(p, "uakt").unwrap();
                proptest::prop_assert_eq!(bal, k * earned);
                supply += bal;
            }
            proptest::prop_assert_eq!(supply, funds.iter().sum::<u128>());
        }
    }
}
