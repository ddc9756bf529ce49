//! The `leasemesh` command line against a real mesh (4 node processes, one Docker provider):
//! a tenant creates a key, grants the settler a spend limit, deploys the demo SDL, reads the
//! market, the lease's status and logs, closes the lease and verifies its settlement proof,
//! every command with `-o json`.
//!
//! Needs the binaries `leasemesh` and `leasemesh-node` in the target directory
//! (`cargo nextest run --workspace` builds both), Docker and /bin/busybox.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{anyhow, ensure, Context as _};
use leasemesh_protocol::PublicKey;
use leasemesh_testnet::demo::{self, DockerCleanup, DEMO_IMAGE};
use leasemesh_testnet::mesh::{Funded, Mesh, MeshSpec, ProviderSpec};
use serde_json::Value;

fn cli_binary(node_bin: &Path) -> anyhow::Result<PathBuf> {
    let bin = node_bin.with_file_name("leasemesh");
    ensure!(bin.exists(), "{} is missing: cargo build -p leasemesh-client", bin.display());
    Ok(bin)
}

/// Runs `leasemesh -o json ARGS`, expecting success and one JSON document on stdout.
fn cli(bin: &Path, home: &Path, node: &str, args: &[&str]) -> anyhow::Result<Value> {
    let out = Command::new(bin)
        .args(["-o", "json", "--home"])
        .arg(home)
        .args(["--node", node])
        .args(args)
        .output()
        .with_context(|| format!("cannot run {}", bin.display()))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    ensure!(
        out.status.success(),
        "leasemesh {args:?} failed: {stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.trim())
        .with_context(|| format!("leasemesh {args:?} printed {stdout}"))
}

fn str_at<'a>(v: &'a Value, ptr: &str) -> anyhow::Result<&'a str> {
    v.pointer(ptr).and_then(Value::as_str).ok_or_else(|| anyhow!("no {ptr} in {v}"))
}

#[test]
fn the_cli_deploys_closes_and_verifies_a_lease() -> anyhow::Result<()> {
    let node_bin = leasemesh_testnet::mesh::node_binary(false, &mut |l| eprintln!("[cli] {l}"))?;
    let bin = cli_binary(&node_bin)?;
    let home = tempfile::tempdir()?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let docker = rt.block_on(demo::docker())?;
    rt.block_on(demo::build_image(&docker, DEMO_IMAGE))?;
    let owner = format!("lmcli{}", std::process::id());
    let _cleanup = DockerCleanup { owner: owner.clone() };

    // A key of its own, private to the tenant.
    let unused = "http://127.0.0.1:9";
    let created = cli(&bin, home.path(), unused, &["keys", "new"])?;
    let key_hex = str_at(&created, "/public_key")?.to_owned();
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(home.path().join("tenant.key"))?.permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    assert_eq!(
        str_at(&cli(&bin, home.path(), unused, &["keys", "show"])?, "/public_key")?,
        key_hex
    );
    ensure!(
        Command::new(&bin)
            .arg("--home")
            .arg(home.path())
            .args(["keys", "new"])
            .output()?
            .status
            .code()
            == Some(1),
        "a second `keys new` must refuse to overwrite"
    );

    let key = PublicKey::from_hex(&key_hex).map_err(|e| anyhow!("{e}"))?;
    let spec = MeshSpec {
        node_bin,
        nodes: 4,
        providers: vec![ProviderSpec::small(100_000)],
        funded: vec![Funded {
            address: key_hex.clone(),
            key,
            denom: "uakt".into(),
            amount: 1_000_000_000,
            grant: 0,
        }],
        denom: "uakt".into(),
        chain: None,
        epoch_ms: 500,
        settle_delay_ms: 200,
        container_prefix: owner,
        keep: false,
        log_filter: "info,libp2p=warn".into(),
    };
    let mesh = Mesh::start(&spec, &mut |l| eprintln!("[cli] {l}"))?;
    let node = mesh.tenant_node().api_url.clone();
    let settler = mesh.settler().api_url.clone();

    let g = cli(&bin, home.path(), &settler, &["grant", "--limit", "500000000uakt"])?;
    assert_eq!(str_at(&g, "/limit")?, "500000000");
    let providers = cli(&bin, home.path(), &node, &["providers"])?;
    assert_eq!(providers.as_array().map(Vec::len), Some(1));

    let sdl = demo::testdata_dir().join("demo.yaml");
    let sdl = sdl.to_str().ok_or_else(|| anyhow!("path"))?;
    let d = cli(&bin, home.path(), &node, &["deploy", sdl, "--bid-window-ms", "1000"])?;
    let lease = str_at(&d, "/leases/0/lease_id")?.to_owned();
    let order = str_at(&d, "/leases/0/order_id")?.to_owned();
    let endpoint = str_at(&d, "/leases/0/endpoints/0")?.to_owned();
    assert!(demo::fetch_page(&endpoint, Duration::from_secs(10))?.contains("leasemesh demo"));

    let bids = cli(&bin, home.path(), &node, &["bids", &order])?;
    assert_eq!(bids.as_array().map(Vec::len), Some(1));
    let leases = cli(&bin, home.path(), &node, &["leases"])?;
    assert!(leases.as_array().is_some_and(|l| l.iter().any(|x| x["lease_id"] == lease.as_str())));
    let status = cli(&bin, home.path(), &node, &["lease", "status", &lease])?;
    assert_eq!(str_at(&status, "/lease/state")?, "running");
    assert!(
        status.pointer("/runtime/replicas/0").is_some(),
        "the provider reports the replica: {status}"
    );
    let logs = cli(&bin, home.path(), &node, &["lease", "logs", &lease])?;
    assert!(logs.get("lines").and_then(Value::as_array).is_some());

    cli(&bin, home.path(), &node, &["lease", "close", &lease])?;
    let lease_id = leasemesh_protocol::Id::from_hex(&lease).map_err(|e| anyhow!("{e}"))?;
    demo::wait_closed_anchored(&mesh.settler().client(), &lease_id, Duration::from_secs(60))?;
    let v = cli(&bin, home.path(), &settler, &["verify-lease", &lease])?;
    assert_eq!(v.get("verified"), Some(&Value::Bool(true)), "{v}");
    Ok(())
}
