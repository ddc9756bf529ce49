//! The whole path with real parts: 5 `leasemesh-node` processes on 127.0.0.1 (a settler, three
//! providers on the Docker runtime, a relay), two tenants deploying SDL files through the light
//! client at the same time, providers competing on price, epoch matching, sealed manifests,
//! containers, close, settlement, proofs. Run twice: settled on the real injectived devnet
//! (tenants pay from their chain accounts through the authz grants they gave the settler) and
//! on the settler's embedded ledger.
//!
//! It asserts what a user relies on: the cheapest feasible provider won each order; every node
//! holds the identical match batch; each container runs with the resources that were ordered;
//! the balances (read from the chain, or the ledger) moved by exactly the accrued amounts; the
//! lease proofs verify.
//!
//! Needs the Docker daemon, Debian's static busybox (/bin/busybox), `injectived`
//! (scripts/install-chain.sh) and the node binary (`cargo build -p leasemesh-node`;
//! `cargo nextest run --workspace` builds it).

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{anyhow, ensure, Context as _};
use bollard::query_parameters::ListContainersOptionsBuilder;
use leasemesh_client::deploy::{self, DeployOptions, DeployedLease};
use leasemesh_client::{settle, NodeClient};
use leasemesh_protocol::{Id, Keypair, PublicKey, SettlementRecord};
use leasemesh_testnet::chain::MeshChain;
use leasemesh_testnet::demo::{self, DockerCleanup, DEMO_IMAGE};
use leasemesh_testnet::mesh::{self, Funded, Mesh, MeshSpec, ProviderSpec};
use serde_json::Value;

const EPOCH_MS: u64 = 500;
const FUNDS: u128 = 1_000_000_000_000;
/// What each tenant grants the settler on the devnet (1 INJ, in base units).
const CHAIN_GRANT: u128 = demo::CHAIN_GRANT;

fn log(line: &str) {
    eprintln!("[e2e] {line}");
}

/// The demo SDL priced in `denom`, optionally requiring a provider attribute.
fn sdl(denom: &str, region: Option<&str>) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(demo::testdata_dir().join("demo.yaml"))?;
    let text = demo::with_denom(&text, denom);
    Ok(match region {
        None => text,
        Some(r) => {
            let from = "    dcloud:\n      pricing:";
            ensure!(text.contains(from), "demo.yaml changed shape");
            text.replace(
                from,
                &format!("    dcloud:\n      attributes:\n        region: {r}\n      pricing:"),
            )
        }
    })
}

fn deploy_async(
    client: NodeClient,
    key: Keypair,
    tenant_address: String,
    text: String,
) -> std::thread::JoinHandle<anyhow::Result<DeployedLease>> {
    std::thread::spawn(move || {
        let opts = DeployOptions {
            bid_window_ms: 1_500,
            tenant_address: Some(tenant_address),
            ..DeployOptions::default()
        };
        let leases = deploy::deploy(&client, &key, &text, &opts, &mut |_| {})?;
        leases.into_iter().next().ok_or_else(|| anyhow!("no lease"))
    })
}

/// Every proof entry the settlement settler serves for a lease, once its close is anchored.
fn closed_proofs(settler: &NodeClient, lease: &Id) -> anyhow::Result<Vec<Value>> {
    demo::wait_closed_anchored(settler, lease, Duration::from_secs(60))?;
    let v = settler.get_json(&format!("/v1/leases/{lease}/proof"))?;
    // Both tenants hold enough: nothing is left unpaid.
    ensure!(v.get("shortfall") == Some(&Value::Null), "unexpected shortfall: {v}");
    Ok(v.get("proofs").and_then(Value::as_array).cloned().unwrap_or_default())
}

fn records(proofs: &[Value]) -> Vec<SettlementRecord> {
    proofs
        .iter()
        .flat_map(|p| {
            p.pointer("/lease_proof/records").and_then(Value::as_array).cloned().unwrap_or_default()
        })
        .filter_map(|r| {
            serde_json::from_value(r.get("record").cloned().unwrap_or(Value::Null)).ok()
        })
        .collect()
}

/// Where the balances and grants are read: the settler's embedded ledger, or the chain.
struct Books<'a> {
    settler: NodeClient,
    chain: Option<&'a MeshChain>,
    rt: &'a tokio::runtime::Runtime,
    denom: &'a str,
}

impl Books<'_> {
    fn balance(&self, address: &str) -> anyhow::Result<u128> {
        if let Some(c) = self.chain {
            return Ok(self.rt.block_on(c.balance(address))?);
        }
        let v = self.settler.get_json(&format!("/v1/ledger/balances/{address}"))?;
        let list = v.get("balances").and_then(Value::as_array).cloned().unwrap_or_default();
        for c in list {
            if c.get("denom").and_then(Value::as_str) == Some(self.denom) {
                let amount = c.get("amount").and_then(Value::as_str).unwrap_or("0");
                return amount.parse().context("balance amount");
            }
        }
        Ok(0)
    }

    fn grant_left(&self, tenant: &str) -> anyhow::Result<u128> {
        if let Some(c) = self.chain {
            return Ok(self.rt.block_on(c.grant_left(tenant))?);
        }
        let v = self.settler.get_json(&format!("/v1/ledger/grants/{tenant}/{}", self.denom))?;
        Ok(v.get("limit").and_then(Value::as_str).map(str::parse).transpose()?.unwrap_or(0))
    }
}

#[test]
fn on_the_devnet_chain_cheapest_feasible_wins_and_tenants_pay_on_chain() -> anyhow::Result<()> {
    run(true)
}

#[test]
fn on_the_embedded_ledger_cheapest_feasible_wins_and_settles() -> anyhow::Result<()> {
    run(false)
}

/// Two tenants, three providers; settled on the devnet chain when `on_chain`.
fn run(on_chain: bool) -> anyhow::Result<()> {
    let node_bin = leasemesh_testnet::mesh::node_binary(false, &mut |l| log(l))?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let docker = rt.block_on(demo::docker())?;
    rt.block_on(demo::build_image(&docker, DEMO_IMAGE))?;
    let owner = format!("lme2e{}", std::process::id());
    let _cleanup = DockerCleanup { owner: owner.clone() };

    // Provider 1 is the cheapest but sits in another region; tenant 1 requires region=local.
    let far = ProviderSpec { region: "far".into(), ..ProviderSpec::small(60_000) };
    let mid = ProviderSpec::small(100_000);
    let dear = ProviderSpec::small(130_000);
    let mut providers = vec![far, mid, dear];
    let t1 = Keypair::from_seed_label("e2e-tenant-1");
    let t2 = Keypair::from_seed_label("e2e-tenant-2");
    let chain = if on_chain {
        log("starting the injectived devnet; tenants grant the settler on chain");
        Some(rt.block_on(MeshChain::start(2, providers.len()))?)
    } else {
        None
    };
    let (denom, a1, a2) = match &chain {
        Some(c) => {
            for (p, a) in providers.iter_mut().zip(&c.providers) {
                p.chain_address = Some(a.address.clone());
            }
            ("inj", c.tenants[0].address.clone(), c.tenants[1].address.clone())
        }
        None => ("uakt", t1.public().to_hex(), t2.public().to_hex()),
    };
    let funded = |k: &Keypair| Funded {
        address: k.public().to_hex(),
        key: k.public(),
        denom: "uakt".into(),
        amount: FUNDS,
        grant: FUNDS / 10,
    };
    let spec = MeshSpec {
        node_bin,
        nodes: 5,
        providers,
        funded: vec![funded(&t1), funded(&t2)],
        denom: denom.into(),
        chain: chain.as_ref().map(MeshChain::spec),
        epoch_ms: EPOCH_MS,
        settle_delay_ms: 200,
        container_prefix: owner.clone(),
        keep: false,
        log_filter: "info,libp2p=warn".into(),
    };
    let mesh = Mesh::start(&spec, &mut |l| log(l))?;
    let key_of = |i: usize| mesh.nodes[i].key;
    let (p_far, p_mid) = (key_of(1), key_of(2));
    let provider_address: BTreeMap<PublicKey, String> =
        mesh.providers().map(|n| (n.key, mesh::provider_address(n))).collect();
    let settler = mesh.settler().client();
    if let Some(c) = &chain {
        // Each tenant grants the settler on chain and binds its account to its order key, as
        // `leasemesh grant --chain-key` does.
        for (i, t) in [&t1, &t2].into_iter().enumerate() {
            let g = c.grant_and_bind(&settler, i, t, CHAIN_GRANT)?;
            log(&format!("tenant {} granted and bound (tx {})", i + 1, g["tx_hash"]));
        }
    }
    let books = Books { settler: settler.clone(), chain: chain.as_ref(), rt: &rt, denom };
    let mut before = BTreeMap::new();
    for a in [&a1, &a2].into_iter().chain(provider_address.values()) {
        before.insert(a.clone(), (books.balance(a)?, books.grant_left(a)?));
    }

    // Both tenants at once, through different nodes.
    let h1 = deploy_async(
        mesh.tenant_node().client(),
        Keypair::from_secret(t1.secret_bytes()),
        a1.clone(),
        sdl(denom, Some("local"))?,
    );
    let h2 = deploy_async(
        mesh.settler().client(),
        Keypair::from_secret(t2.secret_bytes()),
        a2.clone(),
        sdl(denom, None)?,
    );
    let l1 = h1.join().map_err(|_| anyhow!("tenant 1 thread"))??;
    let l2 = h2.join().map_err(|_| anyhow!("tenant 2 thread"))??;
    log(&format!(
        "lease 1 {} on {}, lease 2 {} on {}",
        l1.lease_id, l1.provider, l2.lease_id, l2.provider
    ));

    // The cheapest feasible provider won: tenant 1 could not use the far provider.
    assert_eq!(l1.provider, p_mid, "tenant 1 (region=local) must get the cheapest local provider");
    assert!(
        l1.bids.iter().all(|(p, _)| *p != p_far),
        "the far provider must not bid on a region=local order"
    );
    assert_eq!(l2.provider, p_far, "tenant 2 (any region) must get the cheapest provider");
    for l in [&l1, &l2] {
        let cheapest = l.bids.iter().map(|(_, c)| c.amount).min();
        let won = l.bids.iter().find(|(p, _)| *p == l.provider).map(|(_, c)| c.amount);
        assert_eq!(won, cheapest, "the winning bid is the cheapest bid");
        assert!(l.bids.len() >= 2, "providers competed: {:?}", l.bids);
    }

    // Every node holds the identical match batch for each award's epoch.
    for l in [&l1, &l2] {
        let order = mesh.tenant_node().client().order(&l.order_id)?;
        let epoch = order.body.auction_closes_at_ms() / EPOCH_MS;
        let mut digests = Vec::new();
        for n in &mesh.nodes {
            let c = n.client();
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            let v = loop {
                match c.get_json(&format!("/v1/batches/{epoch}")) {
                    Ok(v) => break v,
                    Err(e) if std::time::Instant::now() > deadline => {
                        return Err(anyhow!("node {}: {e}", n.index))
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(50)),
                }
            };
            let b = leasemesh_client::http::decode_view::<leasemesh_protocol::MatchBatch>(&v)?;
            assert!(
                b.body.awards.iter().any(|a| a.lease_id() == l.lease_id),
                "node {} batch lacks the lease",
                n.index
            );
            digests.push((b.id(), b.body.outcome_digest));
        }
        assert!(
            digests.windows(2).all(|w| w[0] == w[1]),
            "nodes disagree on epoch {epoch}: {digests:?}"
        );
    }

    // Each container runs with the ordered limits, and serves the page.
    for l in [&l1, &l2] {
        let filters =
            [("label".to_string(), vec![format!("leasemesh.lease={}", l.lease_id.to_hex())])]
                .into();
        let opts = ListContainersOptionsBuilder::default().all(true).filters(&filters).build();
        let list = rt.block_on(docker.list_containers(Some(opts)))?;
        assert_eq!(list.len(), 1, "one replica ordered");
        let id = list[0].id.clone().ok_or_else(|| anyhow!("container without id"))?;
        let info = rt.block_on(docker.inspect_container(&id, None))?;
        let hc = info.host_config.ok_or_else(|| anyhow!("no host config"))?;
        assert_eq!(hc.nano_cpus, Some(250_000_000), "0.25 CPU ordered");
        assert_eq!(hc.memory, Some(64 << 20), "64Mi ordered");
        assert_eq!(info.state.and_then(|s| s.running), Some(true));
        let page = demo::fetch_page(&l.endpoints[0], Duration::from_secs(10))?;
        assert!(page.contains("leasemesh demo"), "{page:.200}");
    }

    // Let the leases accrue, close them, wait for the anchored close.
    std::thread::sleep(Duration::from_millis(1_500));
    let tenant_client = mesh.tenant_node().client();
    deploy::close(&tenant_client, &t1, &l1.lease_id)?;
    deploy::close(&tenant_client, &t2, &l2.lease_id)?;
    let mut paid_to: BTreeMap<String, u128> = BTreeMap::new();
    let mut spent_by: BTreeMap<String, u128> = BTreeMap::new();
    for (l, tenant) in [(&l1, &a1), (&l2, &a2)] {
        let proofs = closed_proofs(&settler, &l.lease_id)?;
        let recs = records(&proofs);
        let accrued: u128 = recs
            .iter()
            .filter_map(|r| match r {
                SettlementRecord::Accrual { lease_id, amount, .. } if *lease_id == l.lease_id => {
                    Some(*amount)
                }
                _ => None,
            })
            .sum();
        assert!(accrued > 0, "a lease that ran accrues");
        *spent_by.entry(tenant.clone()).or_default() += accrued;
        let to = provider_address
            .get(&l.provider)
            .cloned()
            .ok_or_else(|| anyhow!("unknown provider"))?;
        *paid_to.entry(to).or_default() += accrued;

        // The proofs verify, with the client's checks and the settlement crate's.
        let rpc = chain.as_ref().map(|c| c.devnet.rpc_url.as_str());
        let v = settle::verify_lease(&settler, &l.lease_id, rpc)?;
        assert!(v.verified(), "client verification: {v:?}");
        let anchor = v.anchor.clone().ok_or_else(|| anyhow!("no anchor"))?;
        match &chain {
            Some(c) => {
                // Anchored on the devnet: every tx each proof's anchor names is on the chain,
                // committed, its memo carrying that batch's sequence and root.
                assert_eq!(anchor.chain_id, c.devnet.chain_id);
                for p in &proofs {
                    let seq = p.get("batch_sequence").and_then(Value::as_u64);
                    let proof: leasemesh_settlement::batch::LeaseProof =
                        serde_json::from_value(p.get("lease_proof").cloned().unwrap_or_default())?;
                    let a: leasemesh_protocol::Anchor =
                        serde_json::from_value(p.get("anchor").cloned().unwrap_or_default())?;
                    for (i, hash) in a.tx_hashes.iter().enumerate() {
                        let tx = rt
                            .block_on(c.client.find_tx(hash))?
                            .ok_or_else(|| anyhow!("anchor tx {hash} is not on the chain"))?;
                        assert_eq!(tx.code, 0, "anchor tx {hash} failed: {}", tx.log);
                        let memo = format!(
                            "lm:v1:{}:{i}/{}:{}",
                            seq.unwrap_or_default(),
                            a.tx_hashes.len(),
                            proof.merkle_root.to_hex()
                        );
                        assert_eq!(tx.memo, memo, "the memo carries the anchored root");
                    }
                }
            }
            None => {
                // The anchor was checked against the ledger's own entry, not taken on the
                // node's word: an entry the ledger does not hold is not served.
                assert_eq!(anchor.chain_id, "local");
                let bogus = format!("{}/v1/ledger/entries/{}", settler.base(), "00".repeat(32));
                assert!(
                    settler.get_json_url(&bogus).is_err(),
                    "an unknown ledger entry is not served"
                );
            }
        }
        for p in &proofs {
            let proof: leasemesh_settlement::batch::LeaseProof =
                serde_json::from_value(p.get("lease_proof").cloned().unwrap_or(Value::Null))?;
            assert!(leasemesh_settlement::batch::verify_lease_proof(&proof, &proof.merkle_root));
        }
    }
    // Tenants paid exactly what their leases accrued (fees are the settler's), their grants
    // went down by the same, and each provider received exactly its leases' accruals.
    for (tenant, spent) in &spent_by {
        let (balance0, grant0) = before[tenant];
        assert_eq!(
            balance0 - books.balance(tenant)?,
            *spent,
            "{tenant}'s balance fell by exactly its accruals"
        );
        assert_eq!(
            grant0 - books.grant_left(tenant)?,
            *spent,
            "{tenant}'s grant to the settler fell by the same"
        );
    }
    for (address, (balance0, _)) in &before {
        if spent_by.contains_key(address) {
            continue;
        }
        let expected = paid_to.get(address).copied().unwrap_or(0);
        assert_eq!(
            books.balance(address)? - balance0,
            expected,
            "{address} received exactly what its leases accrued"
        );
    }
    // Closing removed the containers.
    let filters = [("label".to_string(), vec![format!("leasemesh.owner={owner}")])].into();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let opts = ListContainersOptionsBuilder::default().all(true).filters(&filters).build();
        let left = rt.block_on(docker.list_containers(Some(opts)))?.len();
        if left == 0 {
            break;
        }
        ensure!(
            std::time::Instant::now() < deadline,
            "{left} container(s) still there after close"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}
