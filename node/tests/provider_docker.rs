//! The provider runtime against the real Docker daemon (/var/run/docker.sock).
//!
//! No registry is reachable: the image is built here, through bollard's build API, from a tar
//! context holding node/testdata/busybox-httpd and the host's static busybox (Debian package
//! `busybox-static`, installed by scripts/install-deps.sh). Every test uses fresh lease ids (so
//! its containers, networks and labels are its own) and removes what it created, also when an
//! assertion fails.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{bail, ensure, Context};
use bollard::query_parameters::ListContainersOptionsBuilder;
use futures::StreamExt;
use leasemesh_node::provider::inventory::{Allocation, HostConfig, Inventory};
use leasemesh_node::provider::lease::{LeaseRunner, PendingLeases};
use leasemesh_node::provider::runtime::{
    lease_spec, DockerRuntime, RuntimeConfig, LABEL_LEASE, LABEL_SERVICE,
};
use leasemesh_node::provider::{fixtures, ProviderMetrics};
use leasemesh_protocol::manifest::{
    EnvVar, ExposedPort, Manifest, ManifestGroup, PortProto, ServiceManifest,
};
use leasemesh_protocol::seal::{self, encryption_secret_from_seed};
use leasemesh_protocol::{
    samples, CloseReason, Hash, Id, Keypair, LeaseEventKind, Order, Resources, ServiceGroup,
};
mod provider_support;

use provider_support::{ensure_image, IMAGE};

const CPU_MILLIS: u64 = 250;
const MEMORY: u64 = 48 << 20;

/// Each test is its own provider (owner label and name prefix), so one test's reconcile never
/// touches another's containers.
fn test_config(test: &str) -> RuntimeConfig {
    RuntimeConfig {
        host_address: "127.0.0.1".into(),
        advertise_host: "127.0.0.1".into(),
        // busybox as PID 1 ignores SIGTERM: do not wait for it in tests.
        stop_timeout_s: 0,
        name_prefix: format!("lmtest-{test}-{}", std::process::id()),
        ..RuntimeConfig::default()
    }
}

fn unique(label: &str) -> Id {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    Hash::domain(
        "provider-docker-test",
        &[label.as_bytes(), &nanos.to_le_bytes(), &std::process::id().to_le_bytes()],
    )
}

fn manifest(greeting: &str) -> Manifest {
    Manifest {
        version: leasemesh_protocol::v(),
        groups: vec![ManifestGroup {
            name: "dcloud".into(),
            services: vec![ServiceManifest {
                name: "web".into(),
                image: IMAGE.into(),
                command: vec!["/bin/busybox".into(), "sh".into(), "-c".into()],
                args: vec![
                    "echo \"$GREETING\"; exec /bin/busybox httpd -f -v -p 8080 -h /www".into()
                ],
                env: vec![EnvVar { name: "GREETING".into(), value: greeting.into() }],
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

fn order(m: &Manifest, nonce: u64) -> Order {
    let mut o = samples::order();
    o.nonce = nonce;
    o.groups = vec![ServiceGroup {
        name: "web".into(),
        count: 1,
        resources: Resources {
            cpu_millis: CPU_MILLIS,
            memory_bytes: MEMORY,
            ephemeral_storage_bytes: 1 << 30,
            persistent_storage: vec![],
            tee: None,
            gpu: None,
        },
    }];
    o.manifest_hash = m.hash();
    o
}

/// An awarded lease: the inventory's allocation for the order.
fn allocate(lease: Id, order_id: Id, o: &Order) -> anyhow::Result<Allocation> {
    let host = HostConfig { name: "local".into(), detect_gpus: false, ..HostConfig::default() };
    let (mut inv, _) = Inventory::from_config(&[host], &fixtures::NoGpus)?;
    let plan = inv.plan(o).context("the order fits the test host")?;
    Ok(inv.allocate(lease, order_id, o, &plan.assignments())?)
}

fn runner(rt: DockerRuntime) -> (LeaseRunner, [u8; 32]) {
    let key = Keypair::from_seed_label("docker-test-provider");
    let secret = encryption_secret_from_seed(&key.secret_bytes());
    let public = seal::public_key(&secret);
    (
        LeaseRunner {
            runtime: rt,
            key,
            encryption_secret: secret,
            metrics: ProviderMetrics::default(),
        },
        public,
    )
}

async fn http_get(url: String) -> anyhow::Result<String> {
    tokio::task::spawn_blocking(move || -> anyhow::Result<String> {
        // The container is running; its server may need a moment to listen.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            match ureq::get(&url).timeout(Duration::from_secs(2)).call() {
                Ok(r) => return Ok(r.into_string()?),
                Err(e) if std::time::Instant::now() < deadline => {
                    let _ = e;
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) => bail!("GET {url}: {e}"),
            }
        }
    })
    .await?
}

async fn containers_of(rt: &DockerRuntime, lease: &Id) -> anyhow::Result<Vec<String>> {
    let filters: std::collections::HashMap<String, Vec<String>> =
        [("label".to_string(), vec![format!("{LABEL_LEASE}={}", lease.to_hex())])].into();
    let opts = ListContainersOptionsBuilder::default().all(true).filters(&filters).build();
    Ok(rt.docker().list_containers(Some(opts)).await?.into_iter().filter_map(|c| c.id).collect())
}

async fn network_exists(rt: &DockerRuntime, lease: &Id) -> anyhow::Result<bool> {
    match rt.docker().inspect_network(&rt.config().network_name(lease), None).await {
        Ok(_) => Ok(true),
        Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => {
            Ok(false)
        }
        Err(e) => Err(e.into()),
    }
}

#[tokio::test]
async fn lease_runs_with_ordered_limits_and_close_removes_it() {
    let rt = DockerRuntime::connect(test_config("run")).await.unwrap();
    ensure_image(&rt).await.unwrap();
    let lease = unique("run");
    let result = run_and_close(rt.clone(), lease).await;
    // Whatever happened, leave nothing behind.
    rt.close(&lease).await.unwrap();
    result.unwrap();
}

async fn run_and_close(rt: DockerRuntime, lease: Id) -> anyhow::Result<()> {
    let m = manifest("hello from leasemesh");
    let o = order(&m, 1);
    let order_id = Id::domain("order", &[lease.as_bytes()]);
    let alloc = allocate(lease, order_id, &o)?;
    let (runner, public) = runner(rt.clone());
    let sealed = seal::seal(&m, &public)?;

    let events = runner.run(lease, order_id, &o, &sealed, &alloc, Duration::from_secs(60)).await;
    ensure!(events.len() == 2, "events: {events:?}");
    ensure!(events[0].body.kind == LeaseEventKind::ManifestAccepted);
    let LeaseEventKind::Running { endpoints } = &events[1].body.kind else {
        bail!("expected Running, got {:?}", events[1].body.kind);
    };
    for e in &events {
        e.verify()?;
        ensure!(e.body.lease_id == lease && e.body.order_id == order_id);
    }
    ensure!(endpoints.len() == 1 && endpoints[0].starts_with("http://127.0.0.1:"), "{endpoints:?}");

    // Through the Docker API: one container with the ordered limits, labels and policy.
    let ids = containers_of(&rt, &lease).await?;
    ensure!(ids.len() == 1, "containers: {ids:?}");
    let c = rt.docker().inspect_container(&ids[0], None).await?;
    let hc = c.host_config.context("host config")?;
    ensure!(hc.nano_cpus == Some(CPU_MILLIS as i64 * 1_000_000), "NanoCpus {:?}", hc.nano_cpus);
    ensure!(hc.memory == Some(MEMORY as i64), "Memory {:?}", hc.memory);
    ensure!(hc.privileged != Some(true));
    ensure!(
        hc.restart_policy.and_then(|p| p.name).map(|n| n.to_string()).as_deref()
            == Some("on-failure")
    );
    let labels = c.config.and_then(|c| c.labels).context("labels")?;
    ensure!(labels.get(LABEL_LEASE) == Some(&lease.to_hex()));
    ensure!(labels.get(LABEL_SERVICE).map(String::as_str) == Some("web"));
    ensure!(network_exists(&rt, &lease).await?, "the lease's network exists");

    // The published port answers.
    let page = http_get(format!("{}/index.html", endpoints[0])).await?;
    ensure!(page.contains("leasemesh provider test page"), "page: {page:?}");

    // Status and logs.
    let status = rt.status(&lease).await?;
    ensure!(status.all_running(), "{status:?}");
    ensure!(status.replicas[0].endpoints.len() == 1, "{status:?}");
    let lines: Vec<_> = rt.logs(&lease, false, None).await?.collect().await;
    let text: Vec<String> =
        lines.into_iter().map(|l| l.map(|l| l.line)).collect::<Result<_, _>>()?;
    ensure!(text.iter().any(|l| l.contains("hello from leasemesh")), "logs: {text:?}");

    // A followed log stream delivers lines written after it opened. The stream connects when
    // first polled, which the test cannot observe: keep making requests (each logs a line)
    // while awaiting the first followed line.
    let mut follow = rt.logs(&lease, true, Some(0)).await?;
    let url = format!("{}/index.html?follow", endpoints[0]);
    let traffic = async {
        loop {
            let _ = http_get(url.clone()).await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let next = tokio::select! {
        line = follow.next() => line.context("log stream ended")??,
        _ = traffic => unreachable!(),
        _ = tokio::time::sleep(Duration::from_secs(10)) => bail!("no followed log line within 10 s"),
    };
    ensure!(next.service == "web" && next.line.contains("response:200"), "{next:?}");
    drop(follow);

    // Close: containers and network are gone.
    let closed = runner.close(lease, order_id, CloseReason::TenantClosed).await?;
    ensure!(closed.body.kind == LeaseEventKind::Closed { reason: CloseReason::TenantClosed });
    ensure!(containers_of(&rt, &lease).await?.is_empty(), "containers left after close");
    ensure!(!network_exists(&rt, &lease).await?, "network left after close");
    // Closing twice is fine.
    rt.close(&lease).await?;
    Ok(())
}

#[tokio::test]
async fn restarted_runtime_readopts_live_leases_and_removes_orphans() {
    let rt = DockerRuntime::connect(test_config("readopt")).await.unwrap();
    ensure_image(&rt).await.unwrap();
    let other = DockerRuntime::connect(test_config("readopt-other")).await.unwrap();
    let (live, dead, foreign) = (unique("live"), unique("dead"), unique("foreign"));
    let result = readopt(rt.clone(), other.clone(), live, dead, foreign).await;
    rt.close(&live).await.unwrap();
    rt.close(&dead).await.unwrap();
    other.close(&foreign).await.unwrap();
    result.unwrap();
}

async fn readopt(
    rt: DockerRuntime,
    other: DockerRuntime,
    live: Id,
    dead: Id,
    foreign: Id,
) -> anyhow::Result<()> {
    let m = manifest("readopt");
    // Another provider on the same daemon: its lease is none of our business.
    let o = order(&m, 30);
    let alloc = allocate(foreign, Id::domain("order", &[foreign.as_bytes()]), &o)?;
    other.start(&lease_spec(foreign, &o, &m, &alloc)?).await?;
    let mut endpoints = Vec::new();
    for (i, lease) in [live, dead].iter().enumerate() {
        let o = order(&m, 10 + i as u64);
        let alloc = allocate(*lease, Id::domain("order", &[lease.as_bytes()]), &o)?;
        let spec = lease_spec(*lease, &o, &m, &alloc)?;
        endpoints.push(rt.start(&spec).await?);
    }
    let live_before = containers_of(&rt, &live).await?;
    ensure!(live_before.len() == 1 && containers_of(&rt, &dead).await?.len() == 1);

    // The provider restarts: a new runtime connection, told which leases are live (the store).
    let restarted = DockerRuntime::connect(rt.config().clone()).await?;
    let live_set: BTreeSet<Id> = [live].into();
    let r = restarted.reconcile(&live_set).await?;
    ensure!(r.adopted.contains(&live), "adopted: {:?}", r.adopted);
    ensure!(!r.adopted.contains(&dead));
    let dead_name = format!("{}-{}-web-0", rt.config().name_prefix, &dead.to_hex()[..16]);
    ensure!(r.removed_containers.contains(&dead_name), "removed: {:?}", r.removed_containers);

    // The live lease's container is the same one and still serves; the orphan is gone.
    ensure!(containers_of(&restarted, &live).await? == live_before);
    ensure!(restarted.status(&live).await?.all_running());
    let page = http_get(format!("{}/index.html", endpoints[0][0])).await?;
    ensure!(page.contains("leasemesh provider test page"));
    ensure!(containers_of(&restarted, &dead).await?.is_empty());
    ensure!(!network_exists(&restarted, &dead).await?, "the orphan's network is removed");
    ensure!(network_exists(&restarted, &live).await?, "the live lease keeps its network");
    ensure!(containers_of(&other, &foreign).await?.len() == 1, "another owner's lease is kept");
    Ok(())
}

#[tokio::test]
async fn a_start_that_fails_reports_failed_and_leaves_nothing() {
    let rt = DockerRuntime::connect(test_config("fail")).await.unwrap();
    let lease = unique("fail");
    let result = failing_start(rt.clone(), lease).await;
    rt.close(&lease).await.unwrap();
    result.unwrap();
}

async fn failing_start(rt: DockerRuntime, lease: Id) -> anyhow::Result<()> {
    let mut m = manifest("never");
    // No registry is reachable and this image was never built.
    m.groups[0].services[0].image = "leasemesh-test/absent:0".into();
    let o = order(&m, 20);
    let order_id = Id::domain("order", &[lease.as_bytes()]);
    let alloc = allocate(lease, order_id, &o)?;
    let (runner, public) = runner(rt.clone());
    let sealed = seal::seal(&m, &public)?;
    let events = runner.run(lease, order_id, &o, &sealed, &alloc, Duration::from_secs(30)).await;
    ensure!(events.len() == 2, "{events:?}");
    ensure!(matches!(events[1].body.kind, LeaseEventKind::Failed { .. }), "{events:?}");
    ensure!(containers_of(&rt, &lease).await?.is_empty());
    ensure!(!network_exists(&rt, &lease).await?);

    // A manifest that is not the one the order committed to is refused before Docker is asked.
    let other = manifest("swapped");
    let sealed = seal::seal(&other, &public)?;
    let events = runner.run(lease, order_id, &o, &sealed, &alloc, Duration::from_secs(30)).await;
    ensure!(events.len() == 1, "{events:?}");
    let LeaseEventKind::Failed { reason } = &events[0].body.kind else { bail!("{events:?}") };
    ensure!(reason.contains("manifest"), "{reason}");
    ensure!(containers_of(&rt, &lease).await?.is_empty());

    // The award's deadline passes without a Running: the lease fails, nothing is charged.
    let mut pending = PendingLeases::default();
    pending.add(lease, order_id, 1_000);
    ensure!(pending.overdue(1_000) == vec![(lease, order_id)]);
    Ok(())
}
