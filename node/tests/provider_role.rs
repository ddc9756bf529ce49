//! The provider role inside a real node (in process, loopback, the real Docker daemon): an order
//! the node stores gets the provider's signed bid through the node's own pipeline, the provider
//! publishes its info with per-host free capacity (the reservation taken out), and the lease
//! routes are served by the node's HTTP API.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use leasemesh_node::config::Config;
use leasemesh_node::events::NodeEvent;
use leasemesh_node::ingest::Kind;
use leasemesh_node::provider::inventory::HostConfig;
use leasemesh_node::provider::runtime::DockerRuntime;
use leasemesh_node::provider::ProviderConfig;
use leasemesh_node::store::LeaseState;
use leasemesh_protocol::manifest::{
    EnvVar, ExposedPort, Manifest, ManifestGroup, PortProto, ServiceManifest,
};
use leasemesh_protocol::seal;
use leasemesh_protocol::{
    samples, Assignment, Attribute, Award, CloseReason, Hash, LeaseEvent, LeaseEventKind,
    MatchBatch, Order, Resources, ServiceGroup, Signed,
};

const GIB: u64 = 1 << 30;

fn config(test: &str) -> Config {
    let mut c = Config::default();
    c.network.p2p_listen = vec!["/ip4/127.0.0.1/tcp/0".into()];
    c.api.listen = "127.0.0.1:0".into();
    c.provider = ProviderConfig {
        enabled: true,
        attributes: [("region".to_string(), "eu-west".to_string())].into(),
        // Long: an info showing a new reservation must come from the change, not the timer.
        heartbeat_interval_ms: 60_000,
        hosts: vec![HostConfig {
            name: "h1".into(),
            cpu_millis: 8_000,
            memory_bytes: 16 * GIB,
            ephemeral_storage_bytes: 100 * GIB,
            detect_gpus: false,
            ..HostConfig::default()
        }],
        ..ProviderConfig::default()
    };
    c.provider.runtime.host_address = "127.0.0.1".into();
    // busybox as PID 1 ignores SIGTERM: do not wait the default 10 s for it at close.
    c.provider.runtime.stop_timeout_s = 0;
    c.provider.runtime.name_prefix = format!("lmtest-{test}-{}", std::process::id());
    c
}

#[tokio::test]
async fn node_with_provider_role_bids_and_serves_lease_routes() {
    let home = tempfile::tempdir().unwrap();
    leasemesh_node::identity::create(&home.path().join(leasemesh_node::config::IDENTITY_FILE))
        .unwrap();
    let running = leasemesh_node::start(home.path(), config("role"), vec![]).await.unwrap();
    let node = running.node.clone();
    let me = node.key.public();
    let mut events = node.events.subscribe();

    let mut order = samples::order();
    order.created_at_ms = leasemesh_node::now_ms();
    order.bid_window_ms = 30_000;
    order.placement.attributes = vec![Attribute::new("region", "eu-west")];
    order.placement.min_uptime_bps = 0;
    order.groups = vec![ServiceGroup {
        name: "web".into(),
        count: 2,
        resources: Resources {
            cpu_millis: 1_500,
            memory_bytes: GIB,
            ephemeral_storage_bytes: GIB,
            persistent_storage: vec![],
            tee: None,
            gpu: None,
        },
    }];
    let order = Signed::sign(order, &samples::tenant_key());
    let order_id = order.id();
    node.submit(Kind::Order, order.encode()).await.unwrap();

    // The bid comes back through the node's pipeline; then an info without the reserved cores.
    let wait = async {
        let mut bid = None;
        loop {
            match events.recv().await.unwrap() {
                NodeEvent::Bid { order_id: o, provider, .. } if o == order_id && provider == me => {
                    bid = Some(o);
                }
                NodeEvent::Provider { provider, .. } if provider == me && bid.is_some() => {
                    let info = node.store.provider_info(&me).unwrap().unwrap();
                    if info.body.hosts[0].free.cpu_millis == 8_000 - 3_000 {
                        return info;
                    }
                }
                _ => {}
            }
        }
    };
    let info = tokio::time::timeout(Duration::from_secs(20), wait).await.expect("bid and info");
    assert_eq!(info.body.attributes, vec![Attribute::new("region", "eu-west")]);
    let bids = node.store.bids_for_order(&order_id).unwrap();
    assert_eq!(bids.len(), 1);
    bids[0].body.check_against(&order_id, &order.body).unwrap();

    // The lease routes are served by the node's API.
    let api = format!("http://{}", running.api_addr);
    let unknown = "ab".repeat(32);
    let (a, b, c) = (api.clone(), api.clone(), api);
    let codes = tokio::task::spawn_blocking(move || {
        let code = |r: Result<ureq::Response, ureq::Error>| match r {
            Ok(r) => r.status(),
            Err(ureq::Error::Status(s, _)) => s,
            Err(e) => panic!("{e}"),
        };
        (
            code(ureq::get(&format!("{a}/v1/leases/{unknown}/status")).call()),
            code(ureq::get(&format!("{b}/v1/leases/not-hex/logs")).call()),
            code(ureq::post(&format!("{c}/v1/leases/{unknown}/manifest")).send_bytes(&[1, 2, 3])),
        )
    })
    .await
    .unwrap();
    assert_eq!(codes, (404, 400, 400));
    running.shutdown().await;
}

mod provider_support;

fn web_manifest() -> Manifest {
    Manifest {
        version: leasemesh_protocol::v(),
        groups: vec![ManifestGroup {
            name: "dcloud".into(),
            services: vec![ServiceManifest {
                name: "web".into(),
                image: provider_support::IMAGE.into(),
                command: vec!["/bin/busybox".into(), "sh".into(), "-c".into()],
                args: vec![
                    "echo \"$GREETING\"; exec /bin/busybox httpd -f -v -p 8080 -h /www".into()
                ],
                env: vec![EnvVar { name: "GREETING".into(), value: "e2e lease up".into() }],
                expose: vec![ExposedPort {
                    port: 8080,
                    external_port: 8080,
                    proto: PortProto::Tcp,
                    global: true,
                    hosts: vec![],
                    to_services: vec![],
                    ip_endpoint: None,
                    http_options: None,
                }],
                mounts: vec![],
                count: 1,
                gpu_units: 0,
                tee: None,
            }],
        }],
    }
}

fn http(method: &str, url: String, body: Vec<u8>) -> (u16, String) {
    let r = match method {
        "POST" => ureq::post(&url).send_bytes(&body),
        _ => ureq::get(&url).call(),
    };
    match r {
        Ok(r) => (r.status(), r.into_string().unwrap_or_default()),
        Err(ureq::Error::Status(s, r)) => (s, r.into_string().unwrap_or_default()),
        Err(e) => (0, e.to_string()),
    }
}

/// Order → bid → award (a batch) → sealed manifest over the API → containers → Running event →
/// status and logs over the API → the tenant closes → containers removed.
#[tokio::test]
async fn awarded_lease_runs_from_a_sealed_manifest_and_stops_on_close() {
    awarded_lease("e2e", 3_600_000, Close::Tenant).await;
}

/// The same lease with a short term and no close from the tenant: the provider closes it
/// itself when the term runs out (TermEnded), and the containers go.
#[tokio::test]
async fn lease_closes_itself_when_its_term_ends() {
    awarded_lease("term", 6_000, Close::TermEnd).await;
}

/// The same lease, but the settlement settler closes it because the tenant's funds ran out
/// (a genesis settler signs Closed(InsufficientFunds)): the containers go and the capacity is
/// free again. The node has a genesis here, so the award comes from a batch that passes its
/// check (the matcher re-run on the epoch's inputs), as on a real mesh.
#[tokio::test]
async fn settler_closes_a_lease_whose_tenant_ran_out_of_funds() {
    awarded_lease("funds", 3_600_000, Close::FundsOut).await;
}

/// The provider node restarts while the lease runs: it re-adopts the container, publishes
/// the lease's capacity as taken from its first info on, and still closes it for the tenant.
#[tokio::test]
async fn restarted_provider_keeps_the_lease_and_its_capacity() {
    awarded_lease("restart", 3_600_000, Close::TenantAfterRestart).await;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Close {
    /// The provider node restarts while the lease runs; then the tenant closes it.
    TenantAfterRestart,
    /// The tenant signs the close.
    Tenant,
    /// The provider closes it when its term runs out.
    TermEnd,
    /// A genesis settler closes it: the tenant's funds ran out.
    FundsOut,
}

/// Epochs of the test genesis (one settler: `samples::settler_key`).
const EPOCH_MS: u64 = 1_000;

fn write_genesis(home: &std::path::Path) -> std::path::PathBuf {
    let path = home.join("genesis.toml");
    let text = format!(
        "network = \"provider-test\"\nepoch_ms = {EPOCH_MS}\nsettle_delay_ms = 0\nsettlers = [\"{}\"]\n",
        samples::settler_key().public().to_hex()
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// The epoch's batch as its leader would make it: the matcher over the node's own inputs,
/// once the epoch has closed.
async fn matched_batch(node: &leasemesh_node::Node, order: &Signed<Order>) -> Signed<MatchBatch> {
    use leasemesh_matcher::{batch_check as matching, epoch::EpochClock};
    let clock = EpochClock { epoch_ms: EPOCH_MS, settle_delay_ms: 0, leader_timeout_ms: 2_000 };
    let e = clock.order_epoch(&order.body);
    let wait = clock.end_ms(e).saturating_sub(leasemesh_node::now_ms()) + 50;
    tokio::time::sleep(Duration::from_millis(wait)).await;
    let store = &node.store;
    let inputs = matching::gather(
        &clock,
        e,
        vec![order.clone()],
        |id| store.bids_for_order(id),
        |p, at| store.provider_info_as_of(p, at),
    )
    .expect("the store reads");
    matching::build_batch(&samples::settler_key(), e, Hash::ZERO, leasemesh_node::now_ms(), &inputs)
}

/// Waits until this provider's latest published info shows `cpu_millis` free on its host.
async fn wait_free_cpu(node: &leasemesh_node::Node, cpu_millis: u64) -> anyhow::Result<()> {
    let me = node.key.public();
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let free = node.store.provider_info(&me)?.map(|i| i.body.hosts[0].free.cpu_millis);
        if free == Some(cpu_millis) {
            return Ok(());
        }
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "free cpu is {free:?}, want {cpu_millis}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn awarded_lease(test: &str, lease_term_ms: u64, close: Close) {
    let home = tempfile::tempdir().unwrap();
    leasemesh_node::identity::create(&home.path().join(leasemesh_node::config::IDENTITY_FILE))
        .unwrap();
    let mut cfg = config(test);
    if close == Close::TermEnd {
        // Terms are checked on the heartbeat tick.
        cfg.provider.heartbeat_interval_ms = 500;
    }
    if close == Close::FundsOut {
        // The node learns the settlers from the genesis; it does not lead or settle itself.
        cfg.settler.genesis = write_genesis(home.path()).display().to_string();
        cfg.settler.enabled = false;
    }
    let rt = DockerRuntime::connect(cfg.provider.runtime.clone()).await.unwrap();
    provider_support::ensure_image(&rt).await.unwrap();
    let running = leasemesh_node::start(home.path(), cfg, vec![]).await.unwrap();
    let node = running.node.clone();
    let me = node.key.public();
    let api = format!("http://{}", running.api_addr);
    let mut events = node.events.subscribe();
    // The host's free capacity before any lease (what a close must give back).
    let idle_cpu = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Some(i) = node.store.provider_info(&me).unwrap() {
                return i.body.hosts[0].free.cpu_millis;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the provider publishes its info at start");

    let m = web_manifest();
    let mut order = samples::order();
    order.created_at_ms = leasemesh_node::now_ms();
    // With a genesis the award waits for the epoch to close: keep the auction short.
    order.bid_window_ms = if close == Close::FundsOut { 1_500 } else { 30_000 };
    order.lease_term_ms = lease_term_ms;
    order.placement.attributes = vec![];
    order.placement.min_uptime_bps = 0;
    order.manifest_hash = m.hash();
    order.groups = vec![ServiceGroup {
        name: "web".into(),
        count: 1,
        resources: Resources {
            cpu_millis: 500,
            memory_bytes: 64 << 20,
            ephemeral_storage_bytes: GIB,
            persistent_storage: vec![],
            tee: None,
            gpu: None,
        },
    }];
    let order = Signed::sign(order, &samples::tenant_key());
    let order_id = order.id();
    node.submit(Kind::Order, order.encode()).await.unwrap();
    let bid_id = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            if let NodeEvent::Bid { id, order_id: o, provider, .. } = events.recv().await.unwrap() {
                if o == order_id && provider == me {
                    return id;
                }
            }
        }
    })
    .await
    .expect("a bid");
    let bid = node.store.bid(&bid_id).unwrap().unwrap();

    // The epoch's batch awards the order to this provider.
    if close == Close::FundsOut {
        let batch = matched_batch(&node, &order).await;
        let award = batch.body.awards.iter().find(|a| a.order_id == order_id).cloned();
        let award = award.expect("the matcher awards the order to the only bidder");
        assert_eq!(award.provider, me);
        node.submit(Kind::MatchBatch, batch.encode())
            .await
            .map_err(|o| format!("{:?}: {}", o.reason, o.detail))
            .expect("the node accepts the matched batch");
        let lease_id = award.lease_id();
        let result =
            lease_flow(&node, &mut events, &api, (lease_id, order_id), &m, close, idle_cpu).await;
        rt.close(&lease_id).await.unwrap();
        running.shutdown().await;
        return result.unwrap();
    }
    let award = Award {
        order_id,
        bid_id,
        provider: me,
        price_per_hour: bid.body.price_per_hour.clone(),
        assignments: vec![Assignment {
            group: 0,
            host: "h1".into(),
            replicas: 1,
            gpu_model: None,
            gpus_per_replica: 0,
        }],
    };
    let lease_id = award.lease_id();
    let batch = MatchBatch {
        version: leasemesh_protocol::v(),
        epoch: 1,
        settler: samples::settler_key().public(),
        prev_batch: Hash::ZERO,
        created_at_ms: leasemesh_node::now_ms(),
        order_ids: vec![order_id],
        bid_ids: vec![bid_id],
        provider_info_ids: vec![],
        awards: vec![award],
        outcome_digest: Hash::ZERO,
    };
    node.submit(Kind::MatchBatch, Signed::sign(batch, &samples::settler_key()).encode())
        .await
        .unwrap();

    let result =
        lease_flow(&node, &mut events, &api, (lease_id, order_id), &m, close, idle_cpu).await;
    let mut running = running;
    let result = match (close, result) {
        (Close::TenantAfterRestart, Ok(())) => {
            // Every handle on the store goes, as when the process exits.
            drop((node, events));
            running.shutdown().await;
            let restarted_at = leasemesh_node::now_ms();
            running = leasemesh_node::start(home.path(), config(test), vec![]).await.unwrap();
            after_restart(&running, &rt, (lease_id, order_id), restarted_at, idle_cpu).await
        }
        (_, r) => r,
    };
    rt.close(&lease_id).await.unwrap();
    running.shutdown().await;
    result.unwrap();
}

/// After the restart: the container still runs, the first info the provider publishes already
/// counts the lease, and the tenant's close removes the container and frees the capacity.
async fn after_restart(
    running: &leasemesh_node::Running,
    rt: &DockerRuntime,
    (lease_id, order_id): (leasemesh_protocol::Id, leasemesh_protocol::Id),
    restarted_at: u64,
    idle_cpu: u64,
) -> anyhow::Result<()> {
    use anyhow::{ensure, Context};
    let node = &running.node;
    let me = node.key.public();
    ensure!(rt.status(&lease_id).await?.all_running(), "the lease's container was not kept");
    let first = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Some(i) = node.store.provider_info(&me)? {
                if i.body.created_at_ms >= restarted_at {
                    return anyhow::Ok(i);
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .context("no provider info after the restart")??;
    ensure!(
        first.body.hosts[0].free.cpu_millis == idle_cpu - 500,
        "the first info after the restart offers {} free millicores, the running lease holds 500 of {idle_cpu}",
        first.body.hosts[0].free.cpu_millis
    );
    let ev = LeaseEvent {
        version: leasemesh_protocol::v(),
        lease_id,
        order_id,
        at_ms: leasemesh_node::now_ms(),
        kind: LeaseEventKind::Closed { reason: CloseReason::TenantClosed },
    };
    node.submit(Kind::LeaseEvent, Signed::sign(ev, &samples::tenant_key()).encode())
        .await
        .map_err(|o| anyhow::anyhow!("close refused: {}", o.detail))?;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while rt.status(&lease_id).await.is_ok_and(|s| !s.replicas.is_empty()) {
        ensure!(std::time::Instant::now() < deadline, "the container is still there after close");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    wait_free_cpu(node, idle_cpu).await
}

async fn lease_flow(
    node: &leasemesh_node::Node,
    events: &mut tokio::sync::broadcast::Receiver<NodeEvent>,
    api: &str,
    (lease_id, order_id): (leasemesh_protocol::Id, leasemesh_protocol::Id),
    m: &Manifest,
    close: Close,
    idle_cpu: u64,
) -> anyhow::Result<()> {
    use anyhow::{ensure, Context};
    // The tenant seals the manifest to the key in the provider's info and posts it.
    let info = node.store.provider_info(&node.key.public())?.context("provider info")?;
    let sealed = seal::seal(m, &info.body.encryption_key)?.encode();
    let url = format!("{api}/v1/leases/{}/manifest", lease_id.to_hex());
    // The award reaches the role through the node's events; until then the lease is unknown.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (u, b) = (url.clone(), sealed.clone());
        let (code, text) = tokio::task::spawn_blocking(move || http("POST", u, b)).await?;
        if code == 202 {
            break;
        }
        ensure!(
            code == 404 && std::time::Instant::now() < deadline,
            "POST manifest: {code} {text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            if let NodeEvent::Lease { lease_id: l, state, .. } = events.recv().await? {
                if l == lease_id {
                    ensure!(
                        state != LeaseState::Failed,
                        "the lease failed: {:?}",
                        node.store.lease_events(&lease_id)
                    );
                    if state == LeaseState::Running {
                        return Ok(());
                    }
                }
            }
        }
    })
    .await
    .context("no Running event")??;
    let evs = node.store.lease_events(&lease_id)?;
    let running = evs.iter().find_map(|e| match &e.body.kind {
        LeaseEventKind::Running { endpoints } => Some(endpoints.clone()),
        _ => None,
    });
    let endpoints = running.context("Running event stored")?;
    ensure!(endpoints.len() == 1, "{endpoints:?}");

    let lid = lease_id.to_hex();
    let (a, b, c) = (
        format!("{api}/v1/leases/{lid}/status"),
        format!("{api}/v1/leases/{lid}/logs?tail=100"),
        format!("{}/index.html", endpoints[0]),
    );
    let (status, logs, page) = tokio::task::spawn_blocking(move || {
        (http("GET", a, vec![]), http("GET", b, vec![]), http("GET", c, vec![]))
    })
    .await?;
    ensure!(status.0 == 200 && status.1.contains("\"running\""), "status: {status:?}");
    ensure!(logs.0 == 200 && logs.1.contains("e2e lease up"), "logs: {logs:?}");
    ensure!(page.0 == 200 && page.1.contains("leasemesh provider test page"), "page: {page:?}");

    // While it runs, the lease's 500 millicores are taken from the host.
    wait_free_cpu(node, idle_cpu - 500).await?;
    if close == Close::TenantAfterRestart {
        return Ok(());
    }
    let signed_close = |reason, key: &leasemesh_protocol::Keypair| {
        let ev = LeaseEvent {
            version: leasemesh_protocol::v(),
            lease_id,
            order_id,
            at_ms: leasemesh_node::now_ms(),
            kind: LeaseEventKind::Closed { reason },
        };
        Signed::sign(ev, key).encode()
    };
    match close {
        // The tenant closes the lease: the provider removes the containers.
        Close::Tenant => node
            .submit(
                Kind::LeaseEvent,
                signed_close(CloseReason::TenantClosed, &samples::tenant_key()),
            )
            .await
            .map(|_| ())
            .map_err(|o| anyhow::anyhow!("close refused: {}", o.detail))?,
        Close::FundsOut => {
            // Only a settler may claim the tenant's funds ran out: the tenant cannot.
            let forged = node
                .submit(
                    Kind::LeaseEvent,
                    signed_close(CloseReason::InsufficientFunds, &samples::tenant_key()),
                )
                .await;
            ensure!(forged.is_err(), "a tenant-signed InsufficientFunds close was accepted");
            let ev = signed_close(CloseReason::InsufficientFunds, &samples::settler_key());
            node.submit(Kind::LeaseEvent, ev)
                .await
                .map_err(|o| anyhow::anyhow!("settler close refused: {}", o.detail))?;
        }
        Close::TermEnd | Close::TenantAfterRestart => {}
    }
    let url = format!("{api}/v1/leases/{lid}/status");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let u = url.clone();
        let (code, _) = tokio::task::spawn_blocking(move || http("GET", u, vec![])).await?;
        if code == 404 {
            break;
        }
        ensure!(std::time::Instant::now() < deadline, "containers still there after close");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The capacity is free again, and the provider says so.
    wait_free_cpu(node, idle_cpu).await?;
    // Who closed it, and why, is on record as a signed event.
    let (signer, reason) = match close {
        Close::Tenant => (samples::tenant_key().public(), CloseReason::TenantClosed),
        Close::TermEnd => (node.key.public(), CloseReason::TermEnded),
        Close::FundsOut => (samples::settler_key().public(), CloseReason::InsufficientFunds),
        Close::TenantAfterRestart => (samples::tenant_key().public(), CloseReason::TenantClosed),
    };
    let closed = node
        .store
        .lease_events(&lease_id)?
        .into_iter()
        .any(|e| e.signer == signer && e.body.kind == LeaseEventKind::Closed { reason });
    ensure!(closed, "no Closed({reason:?}) event signed by the expected party");
    Ok(())
}
