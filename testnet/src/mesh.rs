//! A mesh of `leasemesh-node` processes on 127.0.0.1: free ports, a temp home per node, one
//! shared genesis, providers on the Docker runtime. [`Mesh`] stops every process it started when
//! dropped (SIGTERM, then SIGKILL), so a failed or interrupted run leaves nothing behind; the
//! temp directory goes with it unless `keep` is set.

use std::fmt::Write as _;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};
use leasemesh_client::NodeClient;
use leasemesh_protocol::PublicKey;
use serde_json::Value;

/// What one provider sells and charges (uakt per hour).
#[derive(Debug, Clone)]
pub struct ProviderSpec {
    pub cpu_millis: u64,
    pub memory_bytes: u64,
    pub ephemeral_storage_bytes: u64,
    /// Per 1000 millicores per hour.
    pub cpu_per_core: u64,
    pub memory_per_gib: u64,
    pub ephemeral_storage_per_gib: u64,
    pub region: String,
    /// Where the provider is paid: its chain account (bech32) on a chain-backed mesh;
    /// `provider-<node index>` on the embedded ledger when `None`.
    pub chain_address: Option<String>,
    /// `[provider.runtime] kind`: `None` keeps the node's default (Docker); the bench uses
    /// `none` (leases run without containers).
    pub runtime_kind: Option<String>,
}

impl ProviderSpec {
    /// A small provider charging `cpu_per_core` per core-hour.
    pub fn small(cpu_per_core: u64) -> ProviderSpec {
        ProviderSpec {
            cpu_millis: 2_000,
            memory_bytes: 2 << 30,
            ephemeral_storage_bytes: 20 << 30,
            cpu_per_core,
            memory_per_gib: 8_000,
            ephemeral_storage_per_gib: 400,
            region: "local".into(),
            chain_address: None,
            runtime_kind: None,
        }
    }
}

/// A funded tenant account in the genesis (embedded ledger).
#[derive(Debug, Clone)]
pub struct Funded {
    pub address: String,
    pub key: PublicKey,
    pub denom: String,
    pub amount: u128,
    /// Spend grant to the settlement settler set at first start (0: none).
    pub grant: u128,
}

/// Settlement on a Cosmos chain instead of the settler's embedded ledger: the genesis says
/// `backend = "cosmos"`, the settler's home gets the chain key. Balances and grants then live on
/// the chain, so [`MeshSpec::funded`] is not written into the genesis.
#[derive(Clone)]
pub struct ChainSpec {
    /// CometBFT RPC of a node of the chain.
    pub rpc_url: String,
    pub chain_id: String,
    /// The settler's secp256k1 secret, hex (written to `cosmos.key` in the settler's home).
    pub settler_secret_hex: String,
}

impl std::fmt::Debug for ChainSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChainSpec")
            .field("rpc_url", &self.rpc_url)
            .field("chain_id", &self.chain_id)
            .finish_non_exhaustive()
    }
}

/// How to build the mesh.
#[derive(Debug, Clone)]
pub struct MeshSpec {
    pub node_bin: PathBuf,
    /// Number of nodes in all (at least providers + 1).
    pub nodes: usize,
    /// Providers, on nodes 1..=providers.len() (node 0 is the settler and bootstrap).
    pub providers: Vec<ProviderSpec>,
    pub funded: Vec<Funded>,
    /// The denom providers price in (their rate table).
    pub denom: String,
    /// Settle on this chain; the embedded ledger when `None`.
    pub chain: Option<ChainSpec>,
    pub epoch_ms: u64,
    pub settle_delay_ms: u64,
    /// Prefix of the providers' container and network names (cleanup finds them by it).
    pub container_prefix: String,
    /// Keep the temp directory (logs, stores) after the mesh stops.
    pub keep: bool,
    pub log_filter: String,
}

/// One running node process.
#[derive(Debug)]
pub struct NodeProc {
    pub index: usize,
    pub home: PathBuf,
    pub api_url: String,
    pub p2p_addr: String,
    pub peer_id: String,
    pub key: PublicKey,
    pub provider: Option<ProviderSpec>,
    pub settler: bool,
    child: Option<Child>,
}

impl NodeProc {
    pub fn client(&self) -> NodeClient {
        NodeClient::new(&self.api_url)
    }

    pub fn log_path(&self) -> PathBuf {
        self.home.join("node.log")
    }
}

/// A running mesh. Dropping it stops every node.
#[derive(Debug)]
pub struct Mesh {
    pub nodes: Vec<NodeProc>,
    pub dir: PathBuf,
    pub genesis_path: PathBuf,
    _tmp: Option<tempfile::TempDir>,
}

/// A free port, distinct from every port picked before in `held` (whose listeners stay open
/// until all nodes are configured: released ports are handed out again, and 200 nodes pick
/// 400 of them).
fn free_port(held: &mut Vec<TcpListener>) -> anyhow::Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0")?;
    let port = l.local_addr()?.port();
    held.push(l);
    Ok(port)
}

fn toml_str(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

fn toml_list(v: &[String]) -> String {
    toml::Value::Array(v.iter().map(|s| toml::Value::String(s.clone())).collect()).to_string()
}

impl Mesh {
    /// Initializes and starts the nodes, then waits until every node answers, has a peer, and
    /// the last node (the tenant's) sees every provider.
    pub fn start(spec: &MeshSpec, progress: &mut dyn FnMut(&str)) -> anyhow::Result<Mesh> {
        if spec.nodes < spec.providers.len() + 1 {
            bail!(
                "{} nodes cannot hold a settler and {} providers",
                spec.nodes,
                spec.providers.len()
            );
        }
        let tmp = tempfile::Builder::new().prefix("leasemesh-mesh-").tempdir()?;
        let dir = tmp.path().to_path_buf();
        let (tmp, dir) = if spec.keep { (None, tmp.keep()) } else { (Some(tmp), dir) };
        let mut nodes = Vec::new();
        let mut held = Vec::new();
        for i in 0..spec.nodes {
            let home = dir.join(format!("node{i}"));
            let p2p_port = free_port(&mut held)?;
            let api_port = free_port(&mut held)?;
            let out = Command::new(&spec.node_bin)
                .arg("init")
                .arg("--home")
                .arg(&home)
                .arg("--p2p-listen")
                .arg(format!("/ip4/127.0.0.1/tcp/{p2p_port}"))
                .arg("--api-listen")
                .arg(format!("127.0.0.1:{api_port}"))
                .stderr(Stdio::inherit())
                .output()
                .with_context(|| format!("cannot run {}", spec.node_bin.display()))?;
            if !out.status.success() {
                bail!("leasemesh-node init failed for node {i}");
            }
            let v: Value =
                serde_json::from_slice(&out.stdout).context("leasemesh-node init output")?;
            let peer_id = v
                .get("peer_id")
                .and_then(Value::as_str)
                .ok_or_else(|| anyhow!("init: no peer_id"))?
                .to_owned();
            let key_hex = v
                .get("node_key")
                .and_then(Value::as_str)
                .ok_or_else(|| anyhow!("init: no node_key"))?;
            let key = PublicKey::from_hex(key_hex).map_err(|e| anyhow!("init: node_key: {e}"))?;
            let provider = i.checked_sub(1).and_then(|p| spec.providers.get(p)).cloned();
            nodes.push(NodeProc {
                index: i,
                home,
                api_url: format!("http://127.0.0.1:{api_port}"),
                p2p_addr: format!("/ip4/127.0.0.1/tcp/{p2p_port}/p2p/{peer_id}"),
                peer_id,
                key,
                provider,
                settler: i == 0,
                child: None,
            });
        }
        drop(held);
        let genesis_path = dir.join("genesis.toml");
        std::fs::write(&genesis_path, genesis_toml(spec, &nodes[0].key))?;
        if let Some(chain) = &spec.chain {
            write_secret(&nodes[0].home.join("cosmos.key"), &chain.settler_secret_hex)?;
        }
        for i in 0..nodes.len() {
            // Everyone dials the settler and the node before it: a connected mesh at once.
            let mut boot = Vec::new();
            if i > 0 {
                boot.push(nodes[0].p2p_addr.clone());
            }
            if i > 1 {
                boot.push(nodes[i - 1].p2p_addr.clone());
            }
            let text = node_toml(spec, &nodes[i], &boot, &genesis_path);
            std::fs::write(nodes[i].home.join("config.toml"), text)?;
        }
        let mut mesh = Mesh { nodes, dir, genesis_path, _tmp: tmp };
        for n in &mut mesh.nodes {
            let log = std::fs::File::create(n.log_path())?;
            let child = Command::new(&spec.node_bin)
                .arg("run")
                .arg("--home")
                .arg(&n.home)
                .env("RUST_LOG", &spec.log_filter)
                .env("RUST_BACKTRACE", "0")
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log)
                .spawn()
                .with_context(|| format!("cannot start node {}", n.index))?;
            n.child = Some(child);
        }
        progress(&format!("started {} nodes in {}", mesh.nodes.len(), mesh.dir.display()));
        mesh.wait_ready(Duration::from_secs(60), progress)?;
        Ok(mesh)
    }

    fn check_alive(&mut self) -> anyhow::Result<()> {
        for n in &mut self.nodes {
            if let Some(c) = &mut n.child {
                if let Some(status) = c.try_wait()? {
                    let tail = std::fs::read_to_string(n.log_path()).unwrap_or_default();
                    let tail: Vec<&str> = tail.lines().rev().take(15).collect();
                    let tail: Vec<&str> = tail.into_iter().rev().collect();
                    bail!("node {} exited ({status}); its log ends:\n{}", n.index, tail.join("\n"));
                }
            }
        }
        Ok(())
    }

    fn wait_ready(
        &mut self,
        timeout: Duration,
        progress: &mut dyn FnMut(&str),
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        let providers = self.nodes.iter().filter(|n| n.provider.is_some()).count();
        let mut last = String::new();
        loop {
            self.check_alive()?;
            let mut up = 0;
            let mut peered = 0;
            for n in &self.nodes {
                let c = n.client();
                if c.health().is_ok() {
                    up += 1;
                    let peers = c.status().map(|s| s.connected_peers.len()).unwrap_or(0);
                    if peers > 0 {
                        peered += 1;
                    }
                }
            }
            let seen = self.tenant_node().client().providers().map(|p| p.len()).unwrap_or(0);
            let line = format!(
                "nodes up {up}/{n}, with peers {peered}/{n}, providers seen {seen}/{providers}",
                n = self.nodes.len()
            );
            if line != last {
                progress(&line);
                last = line;
            }
            if up == self.nodes.len() && peered == self.nodes.len() && seen >= providers {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "the mesh did not come up within {} s ({last}); logs in {}",
                    timeout.as_secs(),
                    self.dir.display()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The settler (node 0).
    pub fn settler(&self) -> &NodeProc {
        &self.nodes[0]
    }

    /// The node a tenant talks to: the last one, neither settler nor provider when there is one.
    pub fn tenant_node(&self) -> &NodeProc {
        self.nodes.last().unwrap_or(&self.nodes[0])
    }

    pub fn providers(&self) -> impl Iterator<Item = &NodeProc> {
        self.nodes.iter().filter(|n| n.provider.is_some())
    }

    /// Stops every node: SIGTERM, then SIGKILL after `grace`.
    pub fn stop(&mut self, grace: Duration) {
        for n in &mut self.nodes {
            if let Some(c) = &n.child {
                if let Ok(pid) = i32::try_from(c.id()) {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGTERM,
                    );
                }
            }
        }
        let deadline = Instant::now() + grace;
        for n in &mut self.nodes {
            if let Some(mut c) = n.child.take() {
                loop {
                    match c.try_wait() {
                        Ok(Some(_)) => break,
                        Ok(None) if Instant::now() < deadline => {
                            std::thread::sleep(Duration::from_millis(20))
                        }
                        _ => {
                            let _ = c.kill();
                            let _ = c.wait();
                            break;
                        }
                    }
                }
            }
        }
    }
}

impl Drop for Mesh {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(3));
    }
}

/// Writes a secret readable by the owner only.
fn write_secret(path: &Path, secret: &str) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    std::io::Write::write_all(&mut f, secret.as_bytes())?;
    Ok(())
}

fn genesis_toml(spec: &MeshSpec, settler: &PublicKey) -> String {
    let mut s = format!(
        "network = \"leasemesh-local\"\nepoch_ms = {}\nsettle_delay_ms = {}\nleader_timeout_ms = 2000\nsettlers = [{}]\n\n",
        spec.epoch_ms,
        spec.settle_delay_ms,
        toml_str(&settler.to_hex())
    );
    if let Some(chain) = &spec.chain {
        // Balances and grants are the chain's own: nothing to seed here.
        let _ = write!(
            s,
            "[settlement]\nbackend = \"cosmos\"\n\n[settlement.cosmos]\nrpc_url = {}\nchain_id = {}\n",
            toml_str(&chain.rpc_url),
            toml_str(&chain.chain_id)
        );
        return s;
    }
    s.push_str("[settlement]\nbackend = \"local\"\n");
    for f in &spec.funded {
        let _ = write!(
            s,
            "\n[[balances]]\naddress = {}\ndenom = {}\namount = \"{}\"\nkey = {}\n",
            toml_str(&f.address),
            toml_str(&f.denom),
            f.amount,
            toml_str(&f.key.to_hex())
        );
        if f.grant > 0 {
            let _ = write!(
                s,
                "\n[[grants]]\ntenant = {}\ndenom = {}\nlimit = \"{}\"\n",
                toml_str(&f.address),
                toml_str(&f.denom),
                f.grant
            );
        }
    }
    s
}

fn node_toml(spec: &MeshSpec, n: &NodeProc, bootstrap: &[String], genesis: &Path) -> String {
    let api = n.api_url.trim_start_matches("http://");
    let p2p = n.p2p_addr.split("/p2p/").next().unwrap_or_default().to_owned();
    let mut s = format!(
        "[network]\np2p_listen = {}\nbootstrap = {}\nmdns = false\n\n[api]\nlisten = {}\n\n[log]\nfilter = {}\n\n[settler]\ngenesis = {}\nenabled = {}\nsettle_interval_ms = 2000\nsettle_on_close = true\n",
        toml_list(&[p2p]),
        toml_list(bootstrap),
        toml_str(api),
        toml_str(&spec.log_filter),
        toml_str(&genesis.display().to_string()),
        n.settler,
    );
    if let Some(p) = &n.provider {
        let _ = write!(
            s,
            "\n[provider]\nenabled = true\napi_endpoint = {api_url}\nchain_address = {addr}\nattributes = {{ region = {region} }}\nmanifest_deadline_ms = 60000\nheartbeat_interval_ms = 1000\n\n[[provider.hosts]]\nname = \"host-{i}\"\ncpu_millis = {cpu}\nmemory_bytes = {mem}\nephemeral_storage_bytes = {eph}\ndetect_gpus = false\n\n[provider.pricing.rates.{denom}]\ncpu_per_core = {cpc}\nmemory_per_gib = {mpg}\nephemeral_storage_per_gib = {epg}\n\n[provider.runtime]\nhost_address = \"127.0.0.1\"\nadvertise_host = \"127.0.0.1\"\nstop_timeout_s = 0\nname_prefix = {prefix}\n",
            api_url = toml_str(&n.api_url),
            addr = toml_str(&provider_address(n)),
            denom = toml::Value::String(spec.denom.clone()),
            region = toml_str(&p.region),
            i = n.index,
            cpu = p.cpu_millis,
            mem = p.memory_bytes,
            eph = p.ephemeral_storage_bytes,
            cpc = p.cpu_per_core,
            mpg = p.memory_per_gib,
            epg = p.ephemeral_storage_per_gib,
            prefix = toml_str(&spec.container_prefix),
        );
        if let Some(kind) = &p.runtime_kind {
            let _ = writeln!(s, "kind = {}", toml_str(kind));
        }
    }
    s
}

/// Where provider node `n` is paid.
pub fn provider_address(n: &NodeProc) -> String {
    n.provider
        .as_ref()
        .and_then(|p| p.chain_address.clone())
        .unwrap_or_else(|| format!("provider-{}", n.index))
}

/// The `leasemesh-node` binary: beside this executable (same cargo profile). Under `cargo run`
/// (or when it is missing) it is built first with the same profile, which is a no-op when fresh.
///
/// `rebuild = false` (tests) only builds when the binary is missing.
pub fn node_binary(rebuild: bool, progress: &mut dyn FnMut(&str)) -> anyhow::Result<PathBuf> {
    workspace_binary("leasemesh-node", "leasemesh-node", rebuild, progress)
}

/// The binary `bin` of workspace package `package`, found and built like [`node_binary`].
pub fn workspace_binary(
    package: &str,
    bin_name: &str,
    rebuild: bool,
    progress: &mut dyn FnMut(&str),
) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let dir = exe.parent().ok_or_else(|| anyhow!("no directory for {}", exe.display()))?;
    // Test binaries live in target/<profile>/deps.
    let dir = if dir.ends_with("deps") { dir.parent().unwrap_or(dir) } else { dir };
    let bin = dir.join(bin_name);
    let release = dir.file_name().is_some_and(|n| n == "release");
    let cargo = std::env::var_os("CARGO");
    if (rebuild && cargo.is_some()) || !bin.exists() {
        let cargo = cargo.unwrap_or_else(|| "cargo".into());
        progress(&format!("building {bin_name} ({})", if release { "release" } else { "dev" }));
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "-p", package, "--bin", bin_name]);
        if release {
            cmd.arg("--release");
        }
        cmd.current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."));
        let st = cmd.status().with_context(|| format!("cannot run cargo to build {bin_name}"))?;
        if !st.success() {
            bail!("cargo build -p {package} --bin {bin_name} failed");
        }
    }
    if !bin.exists() {
        bail!("{} is missing; build it with cargo build --release -p {package}", bin.display());
    }
    Ok(bin)
}
