//! The journal against the real `LocalLedger`, with a flaky wrapper in front of it as an extra
//! layer: outages, slow confirmations, refusals, ordering, and lease look-ups.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use leasemesh_protocol::samples::settler_key;
use leasemesh_protocol::{Coin, Hash, Keypair, SettlementBatch, Signed};
use leasemesh_settlement::accrual::{accrue, AccrualCursor};
use leasemesh_settlement::anchor::{Anchor, AnchorError, Confirmation, PreparedAnchor};
use leasemesh_settlement::batch::{build_batch, verify_lease_proof, BatchHeader};
use leasemesh_settlement::journal::{BatchStatus, Journal, JournalError, RetryPolicy};
use leasemesh_settlement::ledger::{LedgerEntry, LocalLedger, MAX_ENTRY_SIZE};
use leasemesh_settlement::samples::{self, SampleFleet};

const SETTLER: &str = "settler";
const DENOM: &str = "uakt";

/// `LocalLedger` behind a connection that drops calls and answers "not final yet".
#[derive(Debug)]
struct Flaky {
    inner: LocalLedger,
    /// Calls of each kind that fail with `Unavailable` before one gets through.
    failing_submits: u32,
    failing_confirms: u32,
    /// `Pending` answers before the real one.
    pending_confirms: u32,
    /// Every call fails while down.
    down: bool,
    prepares: u32,
    submits: u32,
}

impl Flaky {
    fn new(inner: LocalLedger) -> Flaky {
        Flaky {
            inner,
            failing_submits: 0,
            failing_confirms: 0,
            pending_confirms: 0,
            down: false,
            prepares: 0,
            submits: 0,
        }
    }
}

fn unavailable() -> AnchorError {
    AnchorError::Unavailable("connection refused".into())
}

impl Anchor for Flaky {
    async fn prepare(
        &mut self,
        batch: &Signed<SettlementBatch>,
    ) -> Result<PreparedAnchor, AnchorError> {
        self.prepares += 1;
        self.inner.prepare(batch).await
    }

    async fn submit(&mut self, prepared: &PreparedAnchor) -> Result<(), AnchorError> {
        if self.down {
            return Err(unavailable());
        }
        if self.failing_submits > 0 {
            self.failing_submits -= 1;
            return Err(unavailable());
        }
        self.submits += 1;
        self.inner.submit(prepared).await
    }

    async fn confirm(&mut self, prepared: &PreparedAnchor) -> Result<Confirmation, AnchorError> {
        if self.down {
            return Err(unavailable());
        }
        if self.failing_confirms > 0 {
            self.failing_confirms -= 1;
            return Err(unavailable());
        }
        if self.pending_confirms > 0 {
            self.pending_confirms -= 1;
            return Ok(Confirmation::Pending);
        }
        self.inner.confirm(prepared).await
    }
}

fn fast() -> RetryPolicy {
    RetryPolicy {
        first_backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(4),
        max_waits: 50,
        resubmit_every: 3,
    }
}

struct Setup {
    _dir: tempfile::TempDir,
    journal: Journal,
    ledger: LocalLedger,
    fleet: SampleFleet,
}

fn setup(funds: u128) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let mut journal = Journal::open(dir.path().join("journal")).unwrap();
    journal.set_retry_policy(fast());
    let ledger = LocalLedger::open(dir.path().join("ledger"), SETTLER).unwrap();
    let fleet = samples::crash_test_fleet();
    for t in &fleet.tenants {
        ledger.fund(t, &Coin::new(DENOM, funds)).unwrap();
        ledger.set_grant(t, SETTLER, &Coin::new(DENOM, u128::MAX)).unwrap();
    }
    Setup { _dir: dir, journal, ledger, fleet }
}

fn provider_total(s: &Setup) -> u128 {
    s.fleet.providers.iter().map(|p| s.ledger.balance(p, DENOM).unwrap()).sum()
}

fn batch_total(b: &Signed<SettlementBatch>) -> u128 {
    leasemesh_settlement::batch::payments(&b.body).iter().map(|(_, a)| a).sum()
}

#[tokio::test]
async fn outages_and_slow_confirmation_are_retried_and_pay_once() {
    let s = setup(u128::from(u64::MAX));
    let batch = s.fleet.signed_batch().unwrap();
    let mut backend = Flaky::new(s.ledger.clone());
    backend.failing_submits = 3;
    backend.failing_confirms = 2;
    backend.pending_confirms = 7;
    let anchor = s.journal.settle(&mut backend, batch.clone()).await.unwrap();
    assert_eq!((anchor.chain_id.as_str(), anchor.height), ("local", 1));
    assert_eq!(backend.prepares, 1);
    assert!(backend.submits >= 2, "pending confirmations trigger resubmits of the same bytes");
    assert_eq!(provider_total(&s), batch_total(&batch));
    assert_eq!(s.ledger.verify_chain().unwrap(), 1);
    // Settling it again returns the same anchor and pays nothing more.
    let again = s.journal.settle(&mut backend, batch.clone()).await.unwrap();
    assert_eq!(again, anchor);
    assert_eq!(provider_total(&s), batch_total(&batch));
}

#[tokio::test]
async fn a_long_outage_keeps_the_batch_for_resume() {
    let s = setup(u128::from(u64::MAX));
    let batch = s.fleet.signed_batch().unwrap();
    let mut backend = Flaky::new(s.ledger.clone());
    backend.down = true;
    match s.journal.settle(&mut backend, batch.clone()).await {
        Err(JournalError::Unavailable { sequence: 1, waits: 50, .. }) => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(s.journal.in_flight().unwrap(), Some((1, batch.id())));
    assert_eq!(s.journal.status(1).unwrap().unwrap().status, BatchStatus::Prepared);
    assert_eq!(provider_total(&s), 0);

    // Nothing else may be settled meanwhile.
    let next = Signed::sign(
        build_batch(
            &BatchHeader {
                settler: settler_key().public(),
                sequence: 2,
                prev_batch: batch.id(),
                created_at_ms: 1,
            },
            &[],
        )
        .unwrap(),
        &settler_key(),
    );
    assert!(matches!(
        s.journal.settle(&mut backend, next).await,
        Err(JournalError::InFlight { sequence: 1, .. })
    ));

    // Prepared bytes may be out there: the batch cannot be abandoned, only resumed.
    assert!(matches!(s.journal.abandon_unsent(1).await, Err(JournalError::InFlight { .. })));

    backend.down = false;
    let anchors = s.journal.resume(&mut backend).await.unwrap();
    assert_eq!(anchors.len(), 1);
    assert_eq!(backend.prepares, 1, "the stored bytes are reused, never prepared again");
    assert_eq!(provider_total(&s), batch_total(&batch));
    assert_eq!(s.journal.in_flight().unwrap(), None);
    assert!(s.journal.resume(&mut backend).await.unwrap().is_empty());
}

#[tokio::test]
async fn batches_must_follow_each_other() {
    let s = setup(u128::from(u64::MAX));
    let mut ledger = s.ledger.clone();
    let key = settler_key();
    let make = |sequence, prev_batch, created_at_ms| {
        Signed::sign(
            build_batch(
                &BatchHeader { settler: key.public(), sequence, prev_batch, created_at_ms },
                &[],
            )
            .unwrap(),
            &key,
        )
    };
    let wrong_first = make(2, Hash::ZERO, 1);
    assert!(matches!(
        s.journal.settle(&mut ledger, wrong_first).await,
        Err(JournalError::OutOfOrder { sequence: 2, expected_sequence: 1, .. })
    ));
    let bad_prev = make(1, Hash::domain("x", &[]), 1);
    assert!(matches!(
        s.journal.settle(&mut ledger, bad_prev).await,
        Err(JournalError::OutOfOrder { .. })
    ));

    let b1 = make(1, Hash::ZERO, 1);
    s.journal.settle(&mut ledger, b1.clone()).await.unwrap();
    let replay = make(1, Hash::ZERO, 2);
    assert!(matches!(
        s.journal.settle(&mut ledger, replay).await,
        Err(JournalError::OutOfOrder { .. })
    ));
    let b2 = make(2, b1.id(), 2);
    s.journal.settle(&mut ledger, b2.clone()).await.unwrap();
    assert_eq!(s.journal.head().unwrap(), Some((2, b2.id())));
    assert_eq!(s.journal.batch(1).unwrap(), Some(b1));
    assert_eq!(ledger.verify_chain().unwrap(), 2);

    // Tampered signature and foreign signer are refused before anything is stored.
    let mut forged = make(3, b2.id(), 3);
    forged.body.created_at_ms += 1;
    assert!(matches!(
        s.journal.settle(&mut ledger, forged).await,
        Err(JournalError::InvalidBatch(_))
    ));
    let mut body = make(3, b2.id(), 3).body;
    body.settler = Keypair::from_seed_label("mallory").public();
    let other = Signed::sign(body, &settler_key());
    assert!(matches!(
        s.journal.settle(&mut ledger, other).await,
        Err(JournalError::InvalidBatch(_))
    ));
    assert_eq!(s.journal.in_flight().unwrap(), None);
}

#[tokio::test]
async fn a_rejected_batch_pays_nothing_and_frees_its_sequence() {
    let s = setup(10); // far too little
    let mut ledger = s.ledger.clone();
    let batch = s.fleet.signed_batch().unwrap();
    match s.journal.settle(&mut ledger, batch.clone()).await {
        Err(JournalError::Rejected { sequence: 1, code: 5, log }) => {
            assert!(log.contains("has 10uakt"), "{log}")
        }
        other => panic!("{other:?}"),
    }
    let state = s.journal.state(&batch.id()).unwrap().unwrap();
    assert_eq!(state.status, BatchStatus::Rejected);
    assert_eq!(s.journal.in_flight().unwrap(), None);
    assert_eq!(s.journal.status(1).unwrap(), None);
    assert_eq!(provider_total(&s), 0);
    for t in &s.fleet.tenants {
        assert_eq!(s.ledger.balance(t, DENOM).unwrap(), 10);
    }
    assert!(matches!(
        s.journal.settle(&mut ledger, batch.clone()).await,
        Err(JournalError::Rejected { .. })
    ));

    // Funded, a new batch for the same sequence goes through.
    for t in &s.fleet.tenants {
        s.ledger.fund(t, &Coin::new(DENOM, u128::from(u64::MAX))).unwrap();
    }
    let mut body = batch.body.clone();
    body.created_at_ms += 1;
    let retry = Signed::sign(body, &settler_key());
    s.journal.settle(&mut ledger, retry.clone()).await.unwrap();
    assert_eq!(s.journal.head().unwrap(), Some((1, retry.id())));
    assert_eq!(provider_total(&s), batch_total(&retry));
}

#[tokio::test]
async fn leases_are_found_and_proved_across_batches() {
    let s = setup(u128::from(u64::MAX));
    let mut ledger = s.ledger.clone();
    let fleet = &s.fleet;
    let first = fleet.accruals().unwrap();
    let b1 = fleet.signed_batch().unwrap();
    s.journal.settle(&mut ledger, b1.clone()).await.unwrap();

    // A restarted settler finds the same cursors in the journal.
    let from_journal = s.journal.cursors().unwrap();
    assert_eq!(from_journal.len(), first.len());
    for a in &first {
        assert_eq!(from_journal[&a.terms.lease_id], a.cursor, "cursor of {}", a.terms.lease_id);
    }

    // An hour later: open leases keep accruing, closed ones are done.
    let later = fleet.now_ms + 3_600_000;
    let cursors: std::collections::BTreeMap<_, AccrualCursor> =
        first.iter().map(|a| (a.terms.lease_id, a.cursor)).collect();
    let mut second = Vec::new();
    for l in &fleet.leases {
        let hb: Vec<u64> = (fleet.now_ms..=later).step_by(10_000).collect();
        let mut all = fleet.heartbeats[&l.terms.provider_address].clone();
        all.extend(hb.into_iter().skip(1));
        if let Some(a) =
            accrue(&l.terms, &l.timeline, &all, cursors.get(&l.terms.lease_id), later).unwrap()
        {
            second.push(a);
        }
    }
    let open: Vec<_> =
        first.iter().filter(|a| a.closed.is_none()).map(|a| a.terms.lease_id).collect();
    assert!(!open.is_empty());
    assert_eq!(second.len(), open.len(), "only open leases accrue again");
    let header = BatchHeader {
        settler: settler_key().public(),
        sequence: 2,
        prev_batch: b1.id(),
        created_at_ms: later,
    };
    let b2 = Signed::sign(build_batch(&header, &second).unwrap(), &settler_key());
    s.journal.settle(&mut ledger, b2.clone()).await.unwrap();

    for a in &first {
        let id = a.terms.lease_id;
        let expected = if open.contains(&id) { vec![1, 2] } else { vec![1] };
        assert_eq!(s.journal.batches_with_lease(&id).unwrap(), expected);
        let proofs = s.journal.lease_proofs(&id).unwrap();
        assert_eq!(proofs.len(), expected.len());
        for (proof, anchor) in proofs {
            // The root the ledger anchored, read back from the ledger entry itself.
            let entry = s.ledger.entry(&anchor.tx_hashes[0]).unwrap().unwrap();
            let entry: LedgerEntry = leasemesh_protocol::codec::from_canonical(
                "ledger entry",
                &entry.bytes,
                MAX_ENTRY_SIZE,
            )
            .unwrap();
            assert!(verify_lease_proof(&proof, &entry.merkle_root));
            assert_eq!(entry.batch_sequence, proof.batch_sequence);
        }
    }
    let failed = fleet.leases.iter().find(|l| l.timeline.running_at_ms.is_none()).unwrap();
    assert!(s.journal.batches_with_lease(&failed.terms.lease_id).unwrap().is_empty());
    assert_eq!(provider_total(&s), batch_total(&b1) + batch_total(&b2));
    let after = s.journal.cursors().unwrap();
    for a in &second {
        assert_eq!(after[&a.terms.lease_id], a.cursor);
    }
}

/// A backend that cannot build bytes for the batch at all.
#[derive(Debug)]
struct Refuses;

impl Anchor for Refuses {
    async fn prepare(
        &mut self,
        _: &Signed<SettlementBatch>,
    ) -> Result<PreparedAnchor, AnchorError> {
        Err(AnchorError::Invalid("batch too large".into()))
    }
    async fn submit(&mut self, _: &PreparedAnchor) -> Result<(), AnchorError> {
        Err(AnchorError::Invalid("nothing to submit".into()))
    }
    async fn confirm(&mut self, _: &PreparedAnchor) -> Result<Confirmation, AnchorError> {
        Ok(Confirmation::Pending)
    }
}

#[tokio::test]
async fn an_unpreparable_batch_can_be_abandoned() {
    let s = setup(u128::from(u64::MAX));
    let batch = s.fleet.signed_batch().unwrap();
    assert!(matches!(
        s.journal.settle(&mut Refuses, batch.clone()).await,
        Err(JournalError::Backend { sequence: 1, source: AnchorError::Invalid(_) })
    ));
    assert_eq!(s.journal.in_flight().unwrap(), Some((1, batch.id())));
    assert!(matches!(s.journal.abandon_unsent(2).await, Err(JournalError::InFlight { .. })));
    s.journal.abandon_unsent(1).await.unwrap();
    assert_eq!(s.journal.in_flight().unwrap(), None);
    assert_eq!(s.journal.state(&batch.id()).unwrap().unwrap().status, BatchStatus::Rejected);
    let mut body = batch.body.clone();
    body.created_at_ms += 1;
    let mut ledger = s.ledger.clone();
    s.journal.settle(&mut ledger, Signed::sign(body, &settler_key())).await.unwrap();
    assert_eq!(provider_total(&s), batch_total(&batch));
}

/// A chain backend whose batch is two transactions: the first lands, the second is refused.
#[derive(Debug)]
struct HalfLands {
    submit_refuses: bool,
    confirms: u32,
}

impl Anchor for HalfLands {
    async fn prepare(
        &mut self,
        b: &Signed<SettlementBatch>,
    ) -> Result<PreparedAnchor, AnchorError> {
        let tx = |chunk: u32| leasemesh_settlement::anchor::PreparedTx {
            chunk,
            bytes: vec![chunk as u8],
            hash: format!("TX{chunk}"),
        };
        Ok(PreparedAnchor { batch_sequence: b.body.sequence, txs: vec![tx(0), tx(1)] })
    }
    async fn submit(&mut self, _: &PreparedAnchor) -> Result<(), AnchorError> {
        if self.submit_refuses {
            return Err(AnchorError::Rejected { code: 13, log: "insufficient fee".into() });
        }
        Ok(())
    }
    async fn confirm(&mut self, _: &PreparedAnchor) -> Result<Confirmation, AnchorError> {
        self.confirms += 1;
        if self.submit_refuses {
            // The first transaction may still be in the mempool.
            return Ok(Confirmation::Pending);
        }
        Ok(Confirmation::PartlyApplied {
            final_txs: vec!["TX0".into()],
            code: 5,
            log: "chunk 1 reverted".into(),
        })
    }
}

#[tokio::test]
async fn a_partly_paid_batch_is_kept_and_blocks_new_batches() {
    for submit_refuses in [false, true] {
        let s = setup(u128::from(u64::MAX));
        let batch = s.fleet.signed_batch().unwrap();
        let mut backend = HalfLands { submit_refuses, confirms: 0 };
        assert!(
            matches!(
                s.journal.settle(&mut backend, batch.clone()).await,
                Err(JournalError::PartlyApplied { sequence: 1, .. })
            ),
            "submit_refuses={submit_refuses}"
        );
        assert_eq!(backend.confirms, 1);
        let state = s.journal.state(&batch.id()).unwrap().unwrap();
        assert_eq!(state.status, BatchStatus::PartlyApplied);
        // The sequence stays taken: no new batch can pay the landed part again.
        assert_eq!(s.journal.in_flight().unwrap(), Some((1, batch.id())));
        let mut body = batch.body.clone();
        body.created_at_ms += 1;
        let mut ledger = s.ledger.clone();
        assert!(matches!(
            s.journal.settle(&mut ledger, Signed::sign(body, &settler_key())).await,
            Err(JournalError::InFlight { sequence: 1, .. })
        ));
        assert!(matches!(
            s.journal.resume(&mut backend).await,
            Err(JournalError::PartlyApplied { .. })
        ));
        assert!(matches!(s.journal.abandon_unsent(1).await, Err(JournalError::InFlight { .. })));
        assert_eq!(backend.confirms, 1, "a stopped batch is not driven again");
    }
}
