//! The provider role inside a real node (in process, loopback, the real Docker daemon): an order
//! the node stores gets the provider's signed bid through the node's own pipeline, the provider
//! publishes its info with per-host free capacity (the reservation taken out), and the lease
//! routes are served by the node's HTTP API.

use std::time::Duration;

use leasemesh_node::config::Config;
use leasemesh_node::events::NodeEvent;
use leasemesh_node::ingest::Kind;
use leasemesh_node::provider::inventory::HostConfig;
use leasemesh_node::provider::ProviderConfig;
use leasemesh_protocol::{samples, Attribute, Resources, ServiceGroup, Signed};

const GIB: u64 = 1 << 30;

fn config() -> Config {
    let mut c = Config::default();
    c.network.p2p_listen = vec!["/ip4/127.0.0.1/tcp/0".into()];
    c.api.listen = "127.0.0.1:0".into();
    c.provider = ProviderConfig {
        enabled: true,
        attributes: [("region".to_string(), "eu-west".to_string())].into(),
        heartbeat_interval_ms: 200,
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
    c.provider.runtime.name_prefix = format!("lmtest-role-{}", std::process::id());
    c
}

#[tokio::test]
async fn node_with_provider_role_bids_and_serves_lease_routes() {
    let home = tempfile::tempdir().unwrap();
    leasemesh_node::identity::create(&home.path().join(leasemesh_node::config::IDENTITY_FILE))
        .unwrap();
    let running = leasemesh_node::start(home.path(), config(), vec![]).await.unwrap();
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
