//! A throw-away one-validator Cosmos chain on loopback: Injective's `injectived` (PyPI package
//! `injective-core`, installed by `scripts/install-chain.sh`), denom and prefix `inj`.
//!
//! [`Devnet::start`] makes a fresh home (a temp dir unless one is given), writes a genesis with
//! funded test accounts whose secp256k1 secrets this process knows, binds every listener to
//! 127.0.0.1 on free ports (so parallel test runs do not collide), starts the node in its own
//! process group and waits for blocks. Dropping the [`Devnet`] stops the whole group and
//! removes the temp dir.
//!
//! Installs nothing: `injectived` must be on `PATH`.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cosmrs::crypto::secp256k1::SigningKey;
use cosmrs::rpc::{Client as _, HttpClient};
use serde::Serialize;
use serde_json::{json, Value};

/// Denom of the chain (also its fee denom).
pub const DENOM: &str = "inj";
/// Bech32 prefix of its addresses.
pub const PREFIX: &str = "inj";
/// The validator's self-delegation; the chain needs at least 1e18.
const SELF_DELEGATION: u128 = 10_000_000_000_000_000_000; // 1e22
/// `code_hash` of an account without code (keccak256 of nothing), as `add-genesis-account`
/// writes it into Injective's `EthAccount`.
const EMPTY_CODE_HASH: &str = "xdJGAYb3IzySfn2y3McDwOUAtlPKgic7e/rYBF2FpHA=";

/// How to start a devnet.
#[derive(Debug, Clone)]
pub struct DevnetConfig {
    /// Home of the node; a fresh temp dir (removed on drop) when `None`. Must not hold a chain.
    pub dir: Option<PathBuf>,
    /// Test accounts to fund.
    pub accounts: usize,
    /// CometBFT `timeout_commit`: about one block per this long. 6 s mimics Akash mainnet.
    pub block_time: Duration,
    pub chain_id: String,
    /// What each test account holds at genesis, in `inj` base units (1e18 per INJ).
    pub account_balance: u128,
    /// Seed of the test accounts' keys: the same seed gives the same accounts.
    pub seed: u64,
    /// Give up when no block appears within this long.
    pub startup_timeout: Duration,
    /// The auth module's `max_memo_characters`; `None` keeps the chain's default (256). The
    /// bench's Akash-style baseline carries deployment-sized memos.
    pub max_memo_characters: Option<u64>,
}

impl Default for DevnetConfig {
    fn default() -> Self {
        DevnetConfig {
            dir: None,
            accounts: 4,
            block_time: Duration::from_millis(500),
            chain_id: "leasemesh-devnet-1".into(),
            account_balance: 1_000_000 * 1_000_000_000_000_000_000, // 1M INJ
            seed: 0x1ea5_e3e5,
            startup_timeout: Duration::from_secs(120),
            max_memo_characters: None,
        }
    }
}

/// One funded test account.
#[derive(Clone, Serialize)]
pub struct DevAccount {
    pub name: String,
    pub address: String,
    /// The secp256k1 secret key, hex.
    pub secret_hex: String,
    #[serde(skip)]
    secret: [u8; 32],
}

impl std::fmt::Debug for DevAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevAccount")
            .field("name", &self.name)
            .field("address", &self.address)
            .finish()
    }
}

impl DevAccount {
    /// A deterministic account: secret = BLAKE3 derive_key of the seed and index.
    pub fn derive(seed: u64, index: usize) -> Result<DevAccount, DevnetError> {
        let mut material = [0u8; 16];
        material[..8].copy_from_slice(&seed.to_be_bytes());
        material[8..].copy_from_slice(&(index as u64).to_be_bytes());
        let secret = blake3::derive_key("leasemesh devnet account v1", &material);
        let key = SigningKey::from_slice(&secret)
            .map_err(|e| DevnetError::Key(format!("account {index}: {e}")))?;
        let address = key
            .public_key()
            .account_id(PREFIX)
            .map_err(|e| DevnetError::Key(format!("account {index}: {e}")))?
            .to_string();
        Ok(DevAccount {
            name: format!("account-{index}"),
            address,
            secret_hex: hex::encode(secret),
            secret,
        })
    }

    pub fn signing_key(&self) -> Result<SigningKey, DevnetError> {
        SigningKey::from_slice(&self.secret).map_err(|e| DevnetError::Key(e.to_string()))
    }
}

/// Why a devnet could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DevnetError {
    #[error(
        "injectived is not on PATH: run scripts/install-chain.sh (pip install injective-core)"
    )]
    NotInstalled,
    #[error("{0} already holds a chain: pass an empty or new directory")]
    DirInUse(PathBuf),
    #[error("`injectived {args}` failed ({status}): {stderr}")]
    Command { args: String, status: String, stderr: String },
    #[error("devnet I/O at {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("devnet genesis or config: {0}")]
    Config(String),
    #[error("devnet key: {0}")]
    Key(String),
    #[error("the chain did not produce blocks within {waited:?}; last log lines:\n{log_tail}")]
    NoBlocks { waited: Duration, log_tail: String },
    #[error("injectived exited ({status}) while starting; last log lines:\n{log_tail}")]
    Exited { status: String, log_tail: String },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> DevnetError + '_ {
    move |source| DevnetError::Io { path: path.to_path_buf(), source }
}

/// Where the devnet listens.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Ports {
    pub rpc: u16,
    pub p2p: u16,
    pub grpc: u16,
    pub abci: u16,
}

/// A running devnet. Dropping it stops the node's process group.
#[derive(Debug)]
pub struct Devnet {
    pub rpc_url: String,
    pub chain_id: String,
    pub ports: Ports,
    /// Funded test accounts.
    pub accounts: Vec<DevAccount>,
    /// Seconds from spawning the node to its first blocks.
    pub startup: Duration,
    home: PathBuf,
    bin: PathBuf,
    block_time: Duration,
    startup_timeout: Duration,
    child: Option<Child>,
    _temp: Option<tempfile::TempDir>,
}

/// Runs `injectived start` in its own process group, logging to `<home>/node.log`.
fn spawn_node(
    bin: &Path,
    home: &Path,
    block_time: Duration,
    append: bool,
) -> Result<Child, DevnetError> {
    use std::os::unix::process::CommandExt as _;
    let log_path = home.join("node.log");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(append)
        .write(true)
        .truncate(!append)
        .open(&log_path)
        .map_err(io_err(&log_path))?;
    let log_err = log.try_clone().map_err(io_err(&log_path))?;
    Command::new(bin)
        .arg("start")
        .arg("--home")
        .arg(home)
        .arg("--log-no-color")
        // Injective ignores config.toml's consensus timeouts (it hardcodes its own); this flag
        // is the only way to set the block time.
        .arg("--unsafe-consensus-timeout-commit")
        .arg(format!("{}ms", block_time.as_millis()))
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err)
        .process_group(0)
        .spawn()
        .map_err(io_err(bin))
}

/// Finds `injectived`: `$LEASEMESH_INJECTIVED` if set, else on `PATH`, else in
/// `~/.local/bin` (where `pip install --user` puts it).
pub fn find_injectived() -> Result<PathBuf, DevnetError> {
    if let Some(explicit) = std::env::var_os("LEASEMESH_INJECTIVED") {
        let p = PathBuf::from(explicit);
        return if p.is_file() { Ok(p) } else { Err(DevnetError::NotInstalled) };
    }
    let mut dirs: Vec<PathBuf> =
        std::env::var_os("PATH").map(|p| std::env::split_paths(&p).collect()).unwrap_or_default();
    if let Some(home) = std::env::var_os("HOME") {
        dirs.push(PathBuf::from(home).join(".local").join("bin"));
    }
    dirs.into_iter()
        .map(|d| d.join("injectived"))
        .find(|c| c.is_file())
        .ok_or(DevnetError::NotInstalled)
}

/// Free loopback ports, chosen by the kernel; held together so they differ.
fn free_ports(n: usize) -> Result<Vec<u16>, DevnetError> {
    let here = Path::new("127.0.0.1:0");
    let listeners = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").map_err(io_err(here)))
        .collect::<Result<Vec<_>, _>>()?;
    listeners.iter().map(|l| l.local_addr().map(|a| a.port()).map_err(io_err(here))).collect()
}

struct Cli {
    bin: PathBuf,
    home: PathBuf,
}

impl Cli {
    fn run(&self, args: &[&str]) -> Result<String, DevnetError> {
        let out = Command::new(&self.bin)
            .args(args)
            .arg("--home")
            .arg(&self.home)
            .stdin(Stdio::null())
            .output()
            .map_err(io_err(&self.bin))?;
        if !out.status.success() {
            return Err(DevnetError::Command {
                args: args.join(" "),
                status: out.status.to_string(),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        // Some subcommands write their JSON to stderr.
        let mut text = String::from_utf8_lossy(&out.stdout).to_string();
        text.push_str(&String::from_utf8_lossy(&out.stderr));
        Ok(text)
    }
}

fn read_toml(path: &Path) -> Result<toml::Table, DevnetError> {
    let text = std::fs::read_to_string(path).map_err(io_err(path))?;
    text.parse::<toml::Table>().map_err(|e| DevnetError::Config(format!("{}: {e}", path.display())))
}

fn write_toml(path: &Path, table: &toml::Table) -> Result<(), DevnetError> {
    let text = toml::to_string(table).map_err(|e| DevnetError::Config(e.to_string()))?;
    std::fs::write(path, text).map_err(io_err(path))
}

/// Sets `section.key` (or a top-level `key` when `section` is empty).
fn set(
    table: &mut toml::Table,
    section: &str,
    key: &str,
    value: toml::Value,
) -> Result<(), DevnetError> {
    let target = if section.is_empty() {
        table
    } else {
        table
            .entry(section)
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
            .as_table_mut()
            .ok_or_else(|| DevnetError::Config(format!("[{section}] is not a table")))?
    };
    target.insert(key.to_string(), value);
    Ok(())
}

fn s(v: impl Into<String>) -> toml::Value {
    toml::Value::String(v.into())
}

/// Adds funded accounts to the genesis: an `EthAccount` in auth, a balance in bank, and the
/// supply raised to match (what `genesis add-genesis-account` does, once for all).
fn fund_in_genesis(genesis: &mut Value, funded: &[(String, u128)]) -> Result<(), DevnetError> {
    let bad = |what: &str| DevnetError::Config(format!("genesis has no {what}"));
    let app = genesis.get_mut("app_state").ok_or_else(|| bad("app_state"))?;
    let accounts = app
        .pointer_mut("/auth/accounts")
        .and_then(Value::as_array_mut)
        .ok_or_else(|| bad("auth.accounts"))?;
    for (address, _) in funded {
        accounts.push(json!({
            "@type": "/injective.types.v1beta1.EthAccount",
            "base_account": {
                "address": address, "pub_key": null, "account_number": "0", "sequence": "0"
            },
            "code_hash": EMPTY_CODE_HASH,
        }));
    }
    let balances = app
        .pointer_mut("/bank/balances")
        .and_then(Value::as_array_mut)
        .ok_or_else(|| bad("bank.balances"))?;
    let mut total: u128 = 0;
    for (address, amount) in funded {
        balances.push(json!({
            "address": address,
            "coins": [{ "denom": DENOM, "amount": amount.to_string() }],
        }));
        total = total
            .checked_add(*amount)
            .ok_or_else(|| DevnetError::Config("supply overflows".into()))?;
    }
    let supply = app
        .pointer_mut("/bank/supply")
        .and_then(Value::as_array_mut)
        .ok_or_else(|| bad("bank.supply"))?;
    let mut found = false;
    for coin in supply.iter_mut() {
        if coin.get("denom").and_then(Value::as_str) == Some(DENOM) {
            let old: u128 = coin
                .get("amount")
                .and_then(Value::as_str)
                .and_then(|a| a.parse().ok())
                .ok_or_else(|| bad("readable supply"))?;
            let new = old
                .checked_add(total)
                .ok_or_else(|| DevnetError::Config("supply overflows".into()))?;
            coin["amount"] = json!(new.to_string());
            found = true;
        }
    }
    if !found {
        supply.push(json!({ "denom": DENOM, "amount": total.to_string() }));
    }
    Ok(())
}

fn log_tail(home: &Path) -> String {
    let text = std::fs::read_to_string(home.join("node.log")).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

impl Devnet {
    /// Starts a fresh chain and returns once it makes blocks.
    pub async fn start(cfg: DevnetConfig) -> Result<Devnet, DevnetError> {
        let bin = find_injectived()?;
        let (home, temp) = match &cfg.dir {
            Some(dir) => {
                if dir.join("config").exists() || dir.join("data").exists() {
                    return Err(DevnetError::DirInUse(dir.clone()));
                }
                std::fs::create_dir_all(dir).map_err(io_err(dir))?;
                (dir.clone(), None)
            }
            None => {
                let t = tempfile::Builder::new()
                    .prefix("leasemesh-devnet-")
                    .tempdir()
                    .map_err(io_err(Path::new("tempdir")))?;
                (t.path().to_path_buf(), Some(t))
            }
        };
        let cli = Cli { bin: bin.clone(), home: home.clone() };

        cli.run(&["init", "validator", "--chain-id", &cfg.chain_id])?;
        let key_json = cli.run(&[
            "keys",
            "add",
            "validator",
            "--key-type",
            "secp256k1",
            "--coin-type",
            "118",
            "--keyring-backend",
            "test",
            "--output",
            "json",
        ])?;
        let validator = key_json
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l.trim()).ok())
            .find_map(|v| v.get("address").and_then(Value::as_str).map(str::to_string))
            .ok_or_else(|| {
                DevnetError::Config(format!("no address in `keys add` output: {key_json}"))
            })?;

        let accounts = (0..cfg.accounts)
            .map(|i| DevAccount::derive(cfg.seed, i))
            .collect::<Result<Vec<_>, _>>()?;

        // Genesis: the bond denom becomes inj, then every account is funded in one edit.
        let genesis_path = home.join("config").join("genesis.json");
        let text = std::fs::read_to_string(&genesis_path).map_err(io_err(&genesis_path))?;
        let text = text.replace("\"stake\"", "\"inj\"");
        let mut genesis: Value = serde_json::from_str(&text)
            .map_err(|e| DevnetError::Config(format!("genesis: {e}")))?;
        let mut funded = vec![(validator.clone(), SELF_DELEGATION.saturating_mul(10))];
        funded.extend(accounts.iter().map(|a| (a.address.clone(), cfg.account_balance)));
        fund_in_genesis(&mut genesis, &funded)?;
        if let Some(max) = cfg.max_memo_characters {
            let params = genesis
                .pointer_mut("/app_state/auth/params")
                .and_then(Value::as_object_mut)
                .ok_or_else(|| DevnetError::Config("genesis has no auth.params".into()))?;
            params.insert("max_memo_characters".into(), json!(max.to_string()));
        }
        let text = serde_json::to_string_pretty(&genesis)
            .map_err(|e| DevnetError::Config(e.to_string()))?;
        std::fs::write(&genesis_path, text).map_err(io_err(&genesis_path))?;

        let stake = format!("{SELF_DELEGATION}{DENOM}");
        cli.run(&[
            "genesis",
            "gentx",
            "validator",
            &stake,
            "--chain-id",
            &cfg.chain_id,
            "--keyring-backend",
            "test",
        ])?;
        cli.run(&["genesis", "collect-gentxs"])?;

        // Every listener on loopback, on ports nobody else holds.
        let p = free_ports(4)?;
        let ports = Ports { rpc: p[0], p2p: p[1], grpc: p[2], abci: p[3] };
        let config_path = home.join("config").join("config.toml");
        let mut config = read_toml(&config_path)?;
        set(&mut config, "", "proxy_app", s(format!("tcp://127.0.0.1:{}", ports.abci)))?;
        set(&mut config, "rpc", "laddr", s(format!("tcp://127.0.0.1:{}", ports.rpc)))?;
        set(&mut config, "rpc", "pprof_laddr", s(""))?;
        set(&mut config, "p2p", "laddr", s(format!("tcp://127.0.0.1:{}", ports.p2p)))?;
        set(&mut config, "p2p", "pex", toml::Value::Boolean(false))?;
        set(&mut config, "instrumentation", "prometheus", toml::Value::Boolean(false))?;
        set(
            &mut config,
            "consensus",
            "timeout_commit",
            s(format!("{}ms", cfg.block_time.as_millis())),
        )?;
        write_toml(&config_path, &config)?;

        let app_path = home.join("config").join("app.toml");
        let mut app = read_toml(&app_path)?;
        set(&mut app, "grpc", "address", s(format!("127.0.0.1:{}", ports.grpc)))?;
        set(&mut app, "api", "enable", toml::Value::Boolean(false))?;
        set(&mut app, "api", "address", s("tcp://127.0.0.1:0"))?;
        set(&mut app, "grpc-web", "enable", toml::Value::Boolean(false))?;
        set(&mut app, "json-rpc", "enable", toml::Value::Boolean(false))?;
        set(&mut app, "json-rpc-debug", "enable", toml::Value::Boolean(false))?;
        write_toml(&app_path, &app)?;

        let spawned_at = Instant::now();
        let child = spawn_node(&bin, &home, cfg.block_time, false)?;
        let rpc_url = format!("http://127.0.0.1:{}", ports.rpc);
        let mut devnet = Devnet {
            rpc_url,
            chain_id: cfg.chain_id.clone(),
            ports,
            accounts,
            startup: Duration::ZERO,
            home,
            bin,
            block_time: cfg.block_time,
            startup_timeout: cfg.startup_timeout,
            child: Some(child),
            _temp: temp,
        };
        devnet.wait_for_blocks(2, cfg.startup_timeout).await?;
        devnet.startup = spawned_at.elapsed();
        tracing::info!(rpc = %devnet.rpc_url, startup = ?devnet.startup, "devnet up");
        Ok(devnet)
    }

    /// Waits until the chain reaches `min_height` (2: the first block is committed and the
    /// next one built on it).
    async fn wait_for_blocks(
        &mut self,
        min_height: u64,
        timeout: Duration,
    ) -> Result<(), DevnetError> {
        let client = HttpClient::new(self.rpc_url.as_str())
            .map_err(|e| DevnetError::Config(format!("RPC client: {e}")))?;
        let start = Instant::now();
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.child = None;
                    return Err(DevnetError::Exited {
                        status: status.to_string(),
                        log_tail: log_tail(&self.home),
                    });
                }
            }
            if let Ok(status) = client.status().await {
                if status.sync_info.latest_block_height.value() >= min_height {
                    return Ok(());
                }
            }
            if start.elapsed() > timeout {
                return Err(DevnetError::NoBlocks {
                    waited: timeout,
                    log_tail: log_tail(&self.home),
                });
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The node's home directory (config, data, `node.log`).
    pub fn home(&self) -> &Path {
        &self.home
    }

    /// The node's process id (also its process group id).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Starts the stopped node again on the same home and ports, and waits for new blocks.
    pub async fn restart(&mut self) -> Result<(), DevnetError> {
        self.stop();
        self.child = Some(spawn_node(&self.bin, &self.home, self.block_time, true)?);
        // The node reports its stored height as soon as it answers; until it commits a new
        // block it checks transactions at height 0 (signatures then fail with code 4), so wait
        // for one block past the stored height.
        let started = Instant::now();
        let stored = loop {
            if let Some(h) = self.height().await {
                break h;
            }
            if started.elapsed() > self.startup_timeout {
                return Err(DevnetError::NoBlocks {
                    waited: self.startup_timeout,
                    log_tail: log_tail(&self.home),
                });
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        self.wait_for_blocks(stored + 1, self.startup_timeout).await
    }

    /// The latest block height, `None` when the node does not answer.
    pub async fn height(&self) -> Option<u64> {
        let client = HttpClient::new(self.rpc_url.as_str()).ok()?;
        Some(client.status().await.ok()?.sync_info.latest_block_height.value())
    }

    /// Stops the node: SIGTERM to its process group, SIGKILL after 10 s.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else { return };
        let Ok(pid) = i32::try_from(child.id()) else { return };
        let group = nix::unistd::Pid::from_raw(pid);
        let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match child.try_wait() {
                Ok(Some(_)) => break,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50))
                }
                _ => {
                    let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
                    let _ = child.wait();
                    break;
                }
            }
        }
        // Anything the node left in its group.
        let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
    }

    /// Leaves the node running and its home on disk (for `up --keep-chain`): returns the
    /// node's process id and home; nothing stops it afterwards.
    pub fn detach(mut self) -> (Option<u32>, PathBuf) {
        let pid = self.child.take().map(|c| c.id());
        if let Some(t) = self._temp.take() {
            let _ = t.keep();
        }
        (pid, self.home.clone())
    }

    /// What `leasemesh-testnet devnet` prints.
    pub fn info_json(&self) -> Value {
        json!({
            "rpc_url": self.rpc_url,
            "chain_id": self.chain_id,
            "denom": DENOM,
            "home": self.home,
            "ports": self.ports,
            "startup_ms": self.startup.as_millis() as u64,
            "accounts": self.accounts,
        })
    }
}

impl Drop for Devnet {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accounts_are_deterministic_and_distinct() {
        let a = DevAccount::derive(7, 0).unwrap();
        assert_eq!(a.address, DevAccount::derive(7, 0).unwrap().address);
        assert_ne!(a.address, DevAccount::derive(7, 1).unwrap().address);
        assert_ne!(a.address, DevAccount::derive(8, 0).unwrap().address);
        assert!(a.address.starts_with("inj1"));
        assert_eq!(
            a.signing_key().unwrap().public_key().account_id(PREFIX).unwrap().to_string(),
            a.address
        );
    }

    #[test]
    fn genesis_funding_adds_accounts_balances_and_supply() {
        let mut g = json!({"app_state": {"auth": {"accounts": []},
            "bank": {"balances": [], "supply": [{"denom": "inj", "amount": "5"}]}}});
        fund_in_genesis(&mut g, &[("inj1a".into(), 10), ("inj1b".into(), 20)]).unwrap();
        assert_eq!(g.pointer("/app_state/auth/accounts").unwrap().as_array().unwrap().len(), 2);
        assert_eq!(g.pointer("/app_state/bank/balances/1/coins/0/amount").unwrap(), "20");
        assert_eq!(g.pointer("/app_state/bank/supply/0/amount").unwrap(), "35");
    }
}
