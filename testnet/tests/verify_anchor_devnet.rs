//! The light client's chain-anchor check against a real chain: a batch settled on a fresh
//! `injectived` devnet in three chunk transactions is checked by reading the chain's CometBFT
//! RPC with the client's own protobuf memo reader; a wrong root, a batch sequence that is not
//! the memo's, a dropped chunk and another chain's id are each refused.
//!
//! Needs `injectived` on PATH (scripts/install-chain.sh).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use leasemesh_client::anchor::{check_chain_anchor, AnchorProblem, RpcSource, TxProblem};
use leasemesh_client::NodeClient;
use leasemesh_protocol::proof::AnchorMemo;
use leasemesh_protocol::{Anchor, Hash, Keypair};
use leasemesh_settlement::cosmos::{Cosmos, CosmosConfig};
use leasemesh_testnet::chain::{chain_config, grant_all, payment_batch, settle_with_journal};
use leasemesh_testnet::devnet::{Devnet, DevnetConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_reads_a_cosmos_anchor_on_the_chain() {
    let devnet =
        Devnet::start(DevnetConfig { accounts: 4, ..DevnetConfig::default() }).await.unwrap();
    let accounts = devnet.accounts.clone();
    let (settler, tenants, providers) = (&accounts[0], &accounts[1..3], &accounts[3..4]);

    // One send per transaction: the batch's two payments become two chunk transactions.
    let mut cfg = CosmosConfig::new(chain_config(&devnet));
    cfg.max_sends_per_tx = 1;
    let mut cosmos = Cosmos::new(cfg, settler.signing_key().unwrap()).unwrap();
    grant_all(cosmos.client(), tenants, cosmos.address(), u128::MAX / 4).await.unwrap();
    let tenant_addrs: Vec<String> = tenants.iter().map(|a| a.address.clone()).collect();
    let provider_addrs: Vec<String> = providers.iter().map(|a| a.address.clone()).collect();
    let key = Keypair::from_seed_label("verify-anchor settler");
    let batch = payment_batch(&key, 1, Hash::ZERO, &tenant_addrs, &provider_addrs, 2, 7);
    let work = tempfile::tempdir().unwrap();
    let anchors =
        settle_with_journal(&work.path().join("journal"), &mut cosmos, Some(batch.clone()), None)
            .await
            .unwrap();
    let anchor = anchors.last().unwrap().clone();
    assert_eq!(anchor.tx_hashes.len(), 2, "one chunk per payment: {anchor:?}");
    let root = batch.body.merkle_root;

    let http = NodeClient::new(&devnet.rpc_url);
    let check = |anchor: &Anchor, seq: u64, root: &Hash| {
        let (rpc, anchor, root) = (devnet.rpc_url.clone(), anchor.clone(), *root);
        let http = http.clone();
        // The client is blocking (ureq): off the runtime's worker.
        std::thread::spawn(move || {
            check_chain_anchor(|u| http.get_json_url(u), &rpc, RpcSource::Flag, &anchor, seq, &root)
        })
        .join()
        .unwrap()
    };

    // The true anchor checks, every chunk's memo read from the chain's bytes.
    let good = check(&anchor, 1, &root);
    assert!(good.ok, "{good:#?}");
    assert_eq!(good.rpc_chain_id.as_deref(), Some(devnet.chain_id.as_str()));
    for (k, t) in good.txs.iter().enumerate() {
        let memo = AnchorMemo { batch_sequence: 1, chunk: k as u64, chunks: 2, merkle_root: root };
        assert_eq!(t.memo.as_deref(), Some(memo.to_string().as_str()));
        assert_eq!(t.code, Some(0));
        assert!(t.height.unwrap() > 0);
        // The settlement crate's own RPC client reads the same memo.
        let theirs = cosmos.client().find_tx(&t.hash).await.unwrap().unwrap();
        assert_eq!(t.memo.as_deref(), Some(theirs.memo.as_str()));
    }

    // Another root, another sequence: every transaction is refused for it.
    let wrong_root = check(&anchor, 1, &Hash::ZERO);
    assert!(!wrong_root.ok);
    assert!(wrong_root
        .txs
        .iter()
        .all(|t| t.problems.iter().any(|p| matches!(p, TxProblem::Root { .. }))));
    let wrong_seq = check(&anchor, 2, &root);
    assert!(wrong_seq.txs.iter().all(|t| t.problems == [TxProblem::Sequence { got: 1, want: 2 }]));

    // A dropped chunk is missed, whichever it is.
    for drop in 0..2 {
        let mut short = anchor.clone();
        short.tx_hashes.remove(drop);
        let c = check(&short, 1, &root);
        assert!(!c.ok);
        assert!(c
            .problems
            .contains(&AnchorProblem::MissingChunk { chunk: drop as u64, chunks: 2 }));
    }

    // An anchor on another chain is not this chain's; an unknown hash is not found.
    let other = Anchor { chain_id: "injective-1".into(), ..anchor.clone() };
    let c = check(&other, 1, &root);
    assert!(c.problems.iter().any(|p| matches!(p, AnchorProblem::ChainId { .. })), "{c:#?}");
    let unknown =
        Anchor { tx_hashes: vec!["AB".repeat(32), anchor.tx_hashes[1].clone()], ..anchor };
    let c = check(&unknown, 1, &root);
    assert!(
        matches!(c.txs[0].problems.as_slice(), [TxProblem::Answer(e)] if e.contains("not found")),
        "{c:#?}"
    );
    assert!(!c.ok);
}
