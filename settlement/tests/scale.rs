//! One batch of 1,000 lease payments from 50 tenants to 20 providers through the journal and
//! `LocalLedger`: balances and grants exact to the unit, computed here from the leases' terms
//! (not from the batch), and a proof for every lease.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::time::Instant;

use leasemesh_protocol::{Coin, SettlementRecord};
use leasemesh_settlement::batch::{verify_lease_proof, BatchProver};
use leasemesh_settlement::journal::Journal;
use leasemesh_settlement::ledger::LocalLedger;
use leasemesh_settlement::samples;

const SETTLER: &str = "settler";
const DENOM: &str = "uakt";
const FUNDS: u128 = 1_000_000_000_000_000;
/// Each tenant's grant is what it owes plus this much, so the leftover is checkable.
const GRANT_SLACK: u128 = 12_345;

#[tokio::test]
async fn thousand_leases_fifty_tenants_twenty_providers() {
    let fleet = samples::fleet(20_261_122, 50, 20, 1_000);
    let running: Vec<_> =
        fleet.leases.iter().filter(|l| l.timeline.running_at_ms.is_some()).collect();
    assert_eq!(running.len(), 1_000);
    assert_eq!(fleet.leases.len(), 1_050, "50 more fail before running");

    // Expected figures straight from the rule: price × whole seconds / 3600, rounded down, from
    // Running to Closed (or to the period's end for open leases: heartbeats never stop).
    let mut owed: BTreeMap<String, u128> = BTreeMap::new();
    let mut earned: BTreeMap<String, u128> = BTreeMap::new();
    for l in &running {
        let start = l.timeline.running_at_ms.unwrap();
        let end = l.timeline.ended.map_or(fleet.now_ms, |e| e.at_ms);
        let amount = l.terms.price_per_hour.amount * u128::from((end - start) / 1000) / 3600;
        *owed.entry(l.terms.tenant_address.clone()).or_default() += amount;
        *earned.entry(l.terms.provider_address.clone()).or_default() += amount;
    }
    assert_eq!((owed.len(), earned.len()), (50, 20));

    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(dir.path().join("journal")).unwrap();
    let mut ledger = LocalLedger::open(dir.path().join("ledger"), SETTLER).unwrap();
    for (t, o) in &owed {
        ledger.fund(t, &Coin::new(DENOM, FUNDS)).unwrap();
        ledger.set_grant(t, SETTLER, &Coin::new(DENOM, o + GRANT_SLACK)).unwrap();
    }

    let t0 = Instant::now();
    let batch = fleet.signed_batch().unwrap();
    let built = t0.elapsed();
    let t1 = Instant::now();
    let anchor = journal.settle(&mut ledger, batch.clone()).await.unwrap();
    let settled = t1.elapsed();
    let payments =
        batch.body.records.iter().filter(|r| matches!(r, SettlementRecord::Payment { .. })).count();
    eprintln!(
        "{{\"leases\":1000,\"records\":{},\"payments\":{},\"build_ms\":{},\"settle_ms\":{}}}",
        batch.body.records.len(),
        payments,
        built.as_millis(),
        settled.as_millis()
    );

    // One payment per (tenant, provider) pair that has a lease; 1000 opened, 900ish closed.
    let pairs: std::collections::BTreeSet<_> =
        running.iter().map(|l| (&l.terms.tenant_address, &l.terms.provider_address)).collect();
    assert_eq!(payments, pairs.len());

    for (t, o) in &owed {
        assert_eq!(ledger.balance(t, DENOM).unwrap(), FUNDS - o, "{t}");
        assert_eq!(ledger.grant(t, SETTLER, DENOM).unwrap(), Some(GRANT_SLACK), "{t} grant");
    }
    for (p, e) in &earned {
        assert_eq!(ledger.balance(p, DENOM).unwrap(), *e, "{p}");
    }
    assert_eq!(ledger.balance(SETTLER, DENOM).unwrap(), 0);
    // Nothing created or destroyed: what the tenants lost, the providers hold.
    let supply: u128 =
        owed.keys().chain(earned.keys()).map(|a| ledger.balance(a, DENOM).unwrap()).sum();
    assert_eq!(supply, 50 * FUNDS);
    assert_eq!(ledger.verify_chain().unwrap(), 1);
    assert_eq!(anchor.height, 1);

    let t2 = Instant::now();
    let prover = BatchProver::new(&batch.body);
    for l in &fleet.leases {
        let proof = prover.prove(&l.terms.lease_id);
        match l.timeline.running_at_ms {
            None => assert!(proof.is_none(), "a lease that never ran leaves no record"),
            Some(_) => {
                let proof = proof.unwrap();
                assert!(verify_lease_proof(&proof, &batch.body.merkle_root));
                // Short: about log2(records) hashes per record.
                assert!(proof.records.iter().all(|r| r.proof.siblings.len() <= 12));
            }
        }
    }
    eprintln!("proved and verified 1000 leases in {} ms", t2.elapsed().as_millis());
}
