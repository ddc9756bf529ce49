//! Settlement on a real chain: a fresh `injectived` devnet (one per test binary: every scenario
//! runs in the one test below, in order, on the same chain) and the Cosmos backend.
//!
//! Needs `injectived` on PATH (scripts/install-chain.sh).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::process::Command;

use leasemesh_protocol::{merkle, Hash, Keypair, SettlementBatch, SettlementRecord, Signed};
use leasemesh_settlement::anchor::{Anchor, AnchorError, Confirmation};
use leasemesh_settlement::cosmos::{
    msg_send, parse_sequence_mismatch, Broadcast, ChainClient, ChainError, Cosmos,
};
use leasemesh_settlement::journal::Journal;
use leasemesh_settlement::ledger::LocalLedger;
use leasemesh_testnet::chain::{
    backend, chain_config, grant_all, payment_batch, settle_with_journal,
};
use leasemesh_testnet::devnet::{DevAccount, Devnet, DevnetConfig, DENOM};

const TENANTS: usize = 50;
const PROVIDERS: usize = 20;
/// What each tenant lets the settler spend.
const GRANT: u128 = 1_000 * 1_000_000_000_000_000_000;
const GAS_PRICE: u128 = 160_000_000;

type Balances = BTreeMap<String, u128>;

async fn balances(client: &ChainClient, accounts: &[&DevAccount]) -> Balances {
    let mut out = BTreeMap::new();
    for a in accounts {
        out.insert(a.address.clone(), client.balance(&a.address, DENOM).await.unwrap());
    }
    out
}

/// (owed per tenant, earned per provider) of a batch's payments.
fn totals(batch: &SettlementBatch) -> (Balances, Balances) {
    let (mut owed, mut earned) = (BTreeMap::new(), BTreeMap::new());
    for r in &batch.records {
        if let SettlementRecord::Payment { tenant_address, provider_address, amount, .. } = r {
            *owed.entry(tenant_address.clone()).or_insert(0u128) += amount;
            *earned.entry(provider_address.clone()).or_insert(0u128) += amount;
        }
    }
    (owed, earned)
}

/// Sum of the fees of the batch's txs: gas limit × price (the chain charges the limit).
async fn fees(client: &ChainClient, hashes: &[String]) -> u128 {
    let mut total = 0;
    for h in hashes {
        let tx = client.find_tx(h).await.unwrap().unwrap();
        total += u128::from(tx.gas_wanted) * GAS_PRICE;
    }
    total
}

fn assert_paid_once(
    before: &Balances,
    after: &Balances,
    batch: &SettlementBatch,
    settler: &str,
    fee: u128,
) {
    let (owed, earned) = totals(batch);
    for (addr, b) in before {
        let a = after[addr];
        let expected = if addr == settler {
            b - fee
        } else {
            b - owed.get(addr).copied().unwrap_or(0) + earned.get(addr).copied().unwrap_or(0)
        };
        assert_eq!(a, expected, "balance of {addr}: before {b}, after {a}");
    }
}

fn settle_once(devnet: &Devnet, settler: &DevAccount, journal: &std::path::Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_leasemesh-testnet"));
    cmd.arg("settle-once")
        .args(["--rpc-url", &devnet.rpc_url, "--chain-id", &devnet.chain_id])
        .arg("--journal")
        .arg(journal)
        .env("LEASEMESH_SETTLER_SECRET", &settler.secret_hex);
    cmd
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settlement_on_the_devnet() {
    let mut devnet = Devnet::start(DevnetConfig {
        accounts: 1 + TENANTS + PROVIDERS + 1,
        ..DevnetConfig::default()
    })
    .await
    .unwrap();
    eprintln!("devnet up in {:?} at {}", devnet.startup, devnet.rpc_url);
    let accounts = devnet.accounts.clone();
    let settler = &accounts[0];
    let tenants = &accounts[1..=TENANTS];
    let providers = &accounts[1 + TENANTS..1 + TENANTS + PROVIDERS];
    let stranger = &accounts[1 + TENANTS + PROVIDERS];
    let everyone: Vec<&DevAccount> = accounts.iter().collect();
    let tenant_addrs: Vec<String> = tenants.iter().map(|a| a.address.clone()).collect();
    let provider_addrs: Vec<String> = providers.iter().map(|a| a.address.clone()).collect();
    let batch_key = Keypair::from_seed_label("devnet settler");

    let mut cosmos = backend(chain_config(&devnet), settler).unwrap();
    let client = cosmos.client().clone();
    grant_all(&client, tenants, cosmos.address(), GRANT).await.unwrap();
    for t in tenants {
        let g = client.send_grant(&t.address, cosmos.address()).await.unwrap();
        assert_eq!(g, Some(vec![(DENOM.to_string(), GRANT)]));
        // What the settler reads before charging a tenant (min with the balance).
        let allowance = client.send_allowance(&t.address, cosmos.address(), DENOM).await.unwrap();
        assert_eq!(allowance, leasemesh_settlement::cosmos::SendAllowance::Limited(GRANT));
    }
    let none = client.send_allowance(&stranger.address, cosmos.address(), DENOM).await.unwrap();
    assert_eq!(none, leasemesh_settlement::cosmos::SendAllowance::None);

    // 1. A batch of 1,000 payments, every (tenant, provider) pair once, through the journal.
    let batch1 = payment_batch(
        &batch_key,
        1,
        Hash::ZERO,
        &tenant_addrs,
        &provider_addrs,
        TENANTS * PROVIDERS,
        1,
    );
    assert_eq!(batch1.body.records.len(), 1_000);
    let root1 = batch1.body.merkle_root.to_hex();
    let before = balances(&client, &everyone).await;
    let work = tempfile::tempdir().unwrap();
    let journal_dir = work.path().join("journal");
    let started = std::time::Instant::now();
    let anchors =
        settle_with_journal(&journal_dir, &mut cosmos, Some(batch1.clone()), None).await.unwrap();
    eprintln!("1,000 payments settled in {:?}", started.elapsed());
    let anchor1 = anchors.last().unwrap().clone();
    assert_eq!(anchor1.chain_id, devnet.chain_id);
    let chunks = anchor1.tx_hashes.len();
    assert!(chunks >= 4, "1,000 sends cannot fit under the block gas limit in {chunks} txs");
    for (k, hash) in anchor1.tx_hashes.iter().enumerate() {
        let tx = client.find_tx(hash).await.unwrap().expect("chunk tx on chain");
        assert_eq!(tx.code, 0, "chunk {k}: {}", tx.log);
        assert_eq!(tx.memo, format!("lm:v1:1:{k}/{chunks}:{root1}"));
        assert!(tx.gas_wanted <= 10_000_000, "chunk {k} asks {} gas", tx.gas_wanted);
        assert!(tx.height <= anchor1.height);
    }
    let after = balances(&client, &everyone).await;
    let fee1 = fees(&client, &anchor1.tx_hashes).await;
    assert!(fee1 > 0);
    assert_paid_once(&before, &after, &batch1.body, cosmos.address(), fee1);
    let (owed1, _) = totals(&batch1.body);
    for t in tenants {
        let left = client.send_grant(&t.address, cosmos.address()).await.unwrap();
        assert_eq!(left, Some(vec![(DENOM.to_string(), GRANT - owed1[&t.address])]));
    }
    // Any record's proof verifies against the root read back from the chain.
    let memo = client.find_tx(&anchor1.tx_hashes[0]).await.unwrap().unwrap().memo;
    let chain_root = Hash::from_hex(memo.rsplit(':').next().unwrap()).unwrap();
    let leaves: Vec<Hash> = batch1.body.records.iter().map(merkle::leaf_hash).collect();
    for i in [0, 1, 499, 999] {
        let proof = merkle::prove(&leaves, i).unwrap();
        assert!(proof.verify(&batch1.body.records[i], &chain_root));
        assert!(!proof.verify(&batch1.body.records[(i + 1) % 1000], &chain_root));
    }

    // 2. The same batch through the LocalLedger: same root, same balance changes.
    let ledger_dir = work.path().join("ledger");
    let mut ledger = LocalLedger::open(&ledger_dir, cosmos.address()).unwrap();
    for t in tenants {
        ledger.fund(&t.address, &leasemesh_protocol::Coin::new(DENOM, before[&t.address])).unwrap();
        ledger
            .set_grant(&t.address, cosmos.address(), &leasemesh_protocol::Coin::new(DENOM, GRANT))
            .unwrap();
    }
    for p in providers {
        ledger.fund(&p.address, &leasemesh_protocol::Coin::new(DENOM, before[&p.address])).unwrap();
    }
    let local_journal = Journal::open(work.path().join("local-journal")).unwrap();
    local_journal.settle(&mut ledger, batch1.clone()).await.unwrap();
    let entry_hash = ledger.entry_for_batch(&batch1.id()).unwrap().expect("ledger entry");
    assert!(ledger.entry(&entry_hash).unwrap().is_some());
    assert_eq!(ledger.entry_for(&batch1).merkle_root, chain_root);
    for a in tenants.iter().chain(providers) {
        assert_eq!(
            ledger.balance(&a.address, DENOM).unwrap(),
            after[&a.address],
            "ledger and chain disagree on {}",
            a.address
        );
        if tenants.iter().any(|t| t.address == a.address) {
            let chain_left = client.send_grant(&a.address, cosmos.address()).await.unwrap();
            let local_left = ledger.grant(&a.address, cosmos.address(), DENOM).unwrap();
            assert_eq!(chain_left.map(|g| g[0].1), local_left);
        }
    }

    // 3. Kill the settler between broadcast and confirmation, restart it: paid once.
    let batch2 =
        payment_batch(&batch_key, 2, batch1.id(), &tenant_addrs[..5], &provider_addrs[..3], 15, 2);
    let batch_file = work.path().join("batch2.bin");
    std::fs::write(&batch_file, batch2.encode()).unwrap();
    let before2 = balances(&client, &everyone).await;
    let crashed = settle_once(&devnet, settler, &journal_dir)
        .arg("--batch")
        .arg(&batch_file)
        .args(["--crash-after", "submitted"])
        .output()
        .unwrap();
    assert!(!crashed.status.success(), "the settler should have been killed");
    assert!(String::from_utf8_lossy(&crashed.stderr).contains("aborting after Submitted"));
    let resumed = settle_once(&devnet, settler, &journal_dir).output().unwrap();
    assert!(resumed.status.success(), "{}", String::from_utf8_lossy(&resumed.stderr));
    let anchor2: leasemesh_protocol::Anchor =
        serde_json::from_slice(resumed.stdout.split(|b| *b == b'\n').next().unwrap()).unwrap();
    assert_eq!(anchor2.tx_hashes.len(), 1);
    // Resuming again finds nothing to do and pays nothing.
    let again = settle_once(&devnet, settler, &journal_dir).output().unwrap();
    assert!(again.status.success());
    assert!(again.stdout.is_empty());
    let after2 = balances(&client, &everyone).await;
    let fee2 = fees(&client, &anchor2.tx_hashes).await;
    assert_paid_once(&before2, &after2, &batch2.body, cosmos.address(), fee2);

    // 4. The backend alone: submit, submit again, confirm, submit once more: paid once.
    let batch3 =
        payment_batch(&batch_key, 3, batch2.id(), &tenant_addrs[5..8], &provider_addrs[..2], 6, 3);
    let before3 = balances(&client, &everyone).await;
    let prepared = cosmos.prepare(&batch3).await.unwrap();
    assert_eq!(prepared.txs.len(), 1);
    let restarted: &mut Cosmos = &mut backend(chain_config(&devnet), settler).unwrap();
    cosmos.submit(&prepared).await.unwrap();
    // The node already holds these bytes: a rebroadcast is harmless.
    assert_eq!(client.broadcast(&prepared.txs[0].bytes).await, Ok(Broadcast::AlreadyKnown));
    restarted.submit(&prepared).await.unwrap();
    let Confirmation::Final(anchor3) = restarted.confirm(&prepared).await.unwrap() else {
        panic!("batch 3 not final")
    };
    restarted.submit(&prepared).await.unwrap();
    assert_eq!(client.broadcast(&prepared.txs[0].bytes).await, Ok(Broadcast::AlreadyKnown));
    assert_eq!(restarted.confirm(&prepared).await.unwrap(), Confirmation::Final(anchor3.clone()));
    let after3 = balances(&client, &everyone).await;
    let fee3 = fees(&client, &anchor3.tx_hashes).await;
    assert_paid_once(&before3, &after3, &batch3.body, cosmos.address(), fee3);

    // 5. A tenant that granted nothing: refused before anything is signed or sent.
    let batch4 = payment_batch(
        &batch_key,
        4,
        batch3.id(),
        std::slice::from_ref(&stranger.address),
        &provider_addrs[..1],
        1,
        4,
    );
    match cosmos.prepare(&batch4).await {
        Err(AnchorError::Invalid(why)) => assert!(why.contains("has not granted"), "{why}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    // A tenant that owes more than its grant left.
    let greedy = Signed::sign(
        SettlementBatch {
            records: vec![SettlementRecord::Payment {
                tenant_address: tenant_addrs[0].clone(),
                provider_address: provider_addrs[0].clone(),
                denom: DENOM.into(),
                amount: GRANT,
            }],
            merkle_root: merkle::root(&[SettlementRecord::Payment {
                tenant_address: tenant_addrs[0].clone(),
                provider_address: provider_addrs[0].clone(),
                denom: DENOM.into(),
                amount: GRANT,
            }]),
            ..batch4.body.clone()
        },
        &batch_key,
    );
    match cosmos.prepare(&greedy).await {
        Err(AnchorError::Invalid(why)) => assert!(why.contains("granted"), "{why}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(balances(&client, &everyone).await, after3);

    // A stale sequence is refused at CheckTx; the RPC error text gives code 32 and both numbers.
    let key = settler.signing_key().unwrap();
    let account = client.account(cosmos.address()).await.unwrap().unwrap();
    let send = msg_send(cosmos.address(), cosmos.address(), DENOM, 1).unwrap();
    let stale = client.sign(&key, account.number, 0, vec![send], "stale", 200_000).unwrap();
    match client.broadcast(&stale.bytes).await {
        Err(ChainError::Rejected { code: 32, log }) => {
            assert_eq!(parse_sequence_mismatch(&log), Some((account.sequence, 0)), "{log}");
            assert!(log.starts_with("account sequence mismatch"), "{log}");
            assert!(!log.contains("codespace") && !log.contains("Location"), "{log}");
        }
        other => panic!("expected a sequence mismatch, got {other:?}"),
    }
    assert_eq!(balances(&client, &everyone).await, after3);

    // 6. The chain goes down: settling waits (Unavailable is retried) and pays once when the
    //    chain is back.
    let settler_account = settler.clone();
    let chain = chain_config(&devnet);
    devnet.stop();
    match cosmos.prepare(&batch4).await {
        Err(AnchorError::Unavailable(_)) => {}
        other => panic!("a stopped chain must be Unavailable, got {other:?}"),
    }
    // Batch 3 went through the backend alone: the journal's next is sequence 3 after batch 2.
    let batch5 = payment_batch(
        &batch_key,
        3,
        batch2.id(),
        &tenant_addrs[10..13],
        &provider_addrs[..2],
        6,
        5,
    );
    let batch5_task = batch5.clone();
    let journal_task = journal_dir.clone();
    let (tx_started, rx_started) = tokio::sync::oneshot::channel();
    let settling = tokio::spawn(async move {
        let mut c = backend(chain, &settler_account).unwrap();
        let _ = tx_started.send(());
        settle_with_journal(&journal_task, &mut c, Some(batch5_task), None).await
    });
    rx_started.await.unwrap();
    devnet.restart().await.unwrap();
    let anchors5 = settling.await.unwrap().unwrap();
    let anchor5 = anchors5.last().unwrap();
    let after5 = balances(&client, &everyone).await;
    let fee5 = fees(&client, &anchor5.tx_hashes).await;
    assert_paid_once(&after3, &after5, &batch5.body, cosmos.address(), fee5);
}
