//! Kill the settler at every step of settling a batch and check that, after a restart, every
//! payment was made exactly once: no payment twice, none lost.
//!
//! The settler is a real child process (`settle-crash-child`) with a journal and a
//! `LocalLedger` in a temp dir; it aborts itself (SIGABRT, no destructors, no flush) right
//! after the chosen durable step. A fresh child then resumes.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Output};

use leasemesh_protocol::{SettlementBatch, Signed};
use leasemesh_settlement::batch::payments;
use leasemesh_settlement::journal::{BatchStatus, Journal};
use leasemesh_settlement::ledger::LocalLedger;
use leasemesh_settlement::samples;

const SETTLER: &str = "settler";
const FUNDS: u128 = 1_000_000_000_000;
const GRANT: u128 = 600_000_000_000;
const DENOM: &str = "uakt";
const SIGABRT: i32 = 6;

fn child(dir: &Path, mode: &str, step: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_settle-crash-child"))
        .arg(dir)
        .arg(mode)
        .arg(step)
        .output()
        .expect("run settle-crash-child")
}

fn assert_crashed(out: &Output, step: &str) {
    assert_eq!(
        out.status.signal(),
        Some(SIGABRT),
        "child should abort after {step}: {:?}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

fn assert_ok(out: &Output) {
    assert!(
        out.status.success(),
        "child failed: {:?}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// What each tenant owes and each provider earns in the sample batch.
struct Expected {
    batch: Signed<SettlementBatch>,
    owed: BTreeMap<String, u128>,
    earned: BTreeMap<String, u128>,
}

fn expected() -> Expected {
    let batch = samples::crash_test_fleet().signed_batch().unwrap();
    let mut owed = BTreeMap::new();
    let mut earned = BTreeMap::new();
    for ((tenant, provider, _denom), amount) in payments(&batch.body) {
        *owed.entry(tenant).or_insert(0u128) += amount;
        *earned.entry(provider).or_insert(0u128) += amount;
    }
    assert!(owed.len() == 10 && earned.len() == 4, "every tenant and provider takes part");
    Expected { batch, owed, earned }
}

fn setup(dir: &Path) {
    let ledger = LocalLedger::open(dir.join("ledger"), SETTLER).unwrap();
    for t in &samples::crash_test_fleet().tenants {
        ledger.fund(t, &leasemesh_protocol::Coin::new(DENOM, FUNDS)).unwrap();
        ledger.set_grant(t, SETTLER, &leasemesh_protocol::Coin::new(DENOM, GRANT)).unwrap();
    }
}

/// Balances and grants as if the batch was paid `times` times (0 or 1).
fn check_ledger(dir: &Path, e: &Expected, times: u128) {
    let ledger = LocalLedger::open(dir.join("ledger"), SETTLER).unwrap();
    for (t, owed) in &e.owed {
        assert_eq!(ledger.balance(t, DENOM).unwrap(), FUNDS - times * owed, "{t} balance");
        assert_eq!(
            ledger.grant(t, SETTLER, DENOM).unwrap(),
            Some(GRANT - times * owed),
            "{t} grant"
        );
    }
    for (p, earned) in &e.earned {
        assert_eq!(ledger.balance(p, DENOM).unwrap(), times * earned, "{p} balance");
    }
    assert_eq!(ledger.verify_chain().unwrap(), times as u64, "ledger entries");
}

fn journal_status(dir: &Path, e: &Expected) -> Option<BatchStatus> {
    let journal = Journal::open(dir.join("journal")).unwrap();
    journal.state(&e.batch.id()).unwrap().map(|s| s.status)
}

fn prepared_hash(dir: &Path, e: &Expected) -> Option<String> {
    let journal = Journal::open(dir.join("journal")).unwrap();
    let state = journal.state(&e.batch.id()).unwrap()?;
    state.prepared.map(|p| p.txs[0].hash.clone())
}

/// After the crash and the resume: paid exactly once, journal anchored and consistent with the
/// ledger, and settling or resuming again changes nothing.
fn check_settled_once(dir: &Path, e: &Expected, hash_before: Option<String>) {
    check_ledger(dir, e, 1);
    assert_eq!(journal_status(dir, e), Some(BatchStatus::Anchored));
    let hash = prepared_hash(dir, e).unwrap();
    if let Some(before) = hash_before {
        assert_eq!(hash, before, "resume must submit the bytes prepared before the crash");
    }
    {
        let journal = Journal::open(dir.join("journal")).unwrap();
        let anchor = journal.state(&e.batch.id()).unwrap().unwrap().anchor.unwrap();
        assert_eq!(anchor.tx_hashes, vec![hash.clone()]);
        assert_eq!(journal.head().unwrap(), Some((1, e.batch.id())));
        let ledger = LocalLedger::open(dir.join("ledger"), SETTLER).unwrap();
        let entry = ledger.entry(&hash).unwrap().unwrap();
        assert_eq!(entry.height, anchor.height);
    }
    // A restarted settler that settles the same batch again, and one that resumes: no-ops.
    assert_ok(&child(dir, "settle", "none"));
    assert_ok(&child(dir, "resume", "none"));
    check_ledger(dir, e, 1);
}

#[test]
fn a_crash_at_any_step_pays_exactly_once() {
    let e = expected();
    // Step, whether the ledger has applied the batch when the settler dies, journal status.
    let cases = [
        ("stored", 0, BatchStatus::Stored),
        ("prepared", 0, BatchStatus::Prepared),
        ("submitted", 1, BatchStatus::Prepared),
        ("confirmed", 1, BatchStatus::Prepared),
        ("anchored", 1, BatchStatus::Anchored),
    ];
    for (step, paid, status) in cases {
        let dir = tempfile::tempdir().unwrap();
        setup(dir.path());
        assert_crashed(&child(dir.path(), "settle", step), step);
        check_ledger(dir.path(), &e, paid);
        assert_eq!(journal_status(dir.path(), &e), Some(status), "after crash at {step}");
        let hash_before = prepared_hash(dir.path(), &e);
        assert_eq!(hash_before.is_some(), step != "stored");

        assert_ok(&child(dir.path(), "resume", "none"));
        check_settled_once(dir.path(), &e, hash_before);
    }
}

#[test]
fn repeated_crashes_during_resume_still_pay_once() {
    let e = expected();
    let dir = tempfile::tempdir().unwrap();
    setup(dir.path());
    assert_crashed(&child(dir.path(), "settle", "prepared"), "prepared");
    let hash_before = prepared_hash(dir.path(), &e);
    // The resume dies too, once after resubmitting, once after confirming.
    assert_crashed(&child(dir.path(), "resume", "submitted"), "submitted");
    check_ledger(dir.path(), &e, 1);
    assert_crashed(&child(dir.path(), "resume", "confirmed"), "confirmed");
    assert_ok(&child(dir.path(), "resume", "none"));
    check_settled_once(dir.path(), &e, hash_before);
}

#[test]
fn without_a_crash_the_same_balances() {
    let e = expected();
    let dir = tempfile::tempdir().unwrap();
    setup(dir.path());
    let out = child(dir.path(), "settle", "none");
    assert_ok(&out);
    assert!(String::from_utf8_lossy(&out.stdout).contains("anchored local at height 1"));
    check_settled_once(dir.path(), &e, None);
}
