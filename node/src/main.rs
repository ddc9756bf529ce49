//! `leasemesh-node`: `init` writes a home directory (config and identity), `run` runs the node.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use leasemesh_node::config::{Config, LogFormat, CONFIG_FILE, IDENTITY_FILE};
use leasemesh_node::identity;

#[derive(Debug, Parser)]
#[command(
    name = "leasemesh-node",
    version,
    about = "The leasemesh node: gossip mesh, store and HTTP API"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Creates a home directory: a commented config.toml and a new ed25519 identity (mode 0600).
    Init {
        #[arg(long)]
        home: PathBuf,
        /// Multiaddress to listen on (repeatable); replaces the default TCP and QUIC addresses.
        #[arg(long = "p2p-listen")]
        p2p_listen: Vec<String>,
        /// HTTP API address (HOST:PORT).
        #[arg(long = "api-listen")]
        api_listen: Option<String>,
        /// Peer to dial at start, ending in /p2p/<peer id> (repeatable).
        #[arg(long)]
        bootstrap: Vec<String>,
        /// Turn on mDNS discovery.
        #[arg(long)]
        mdns: bool,
        /// Enable the unsafe raw-publish debug endpoint (tests only).
        #[arg(long, hide = true)]
        unsafe_raw_publish: bool,
    },
    /// Runs the node until SIGINT or SIGTERM.
    Run {
        #[arg(long)]
        home: PathBuf,
        /// Log format, `plain` (alias `text`) or `json`; overrides the config `[log] format`.
        #[arg(long, value_enum)]
        log_format: Option<LogFormat>,
        /// HTTP API address; overrides the config.
        #[arg(long = "api-listen")]
        api_listen: Option<String>,
        /// Extra bootstrap peers; added to the config's.
        #[arg(long)]
        bootstrap: Vec<String>,
    },
    /// Writes a network genesis file (settlers, epochs, ledger balances) for every node's
    /// `[settler] genesis`.
    Genesis(leasemesh_node::settler::genesis::GenesisArgs),
}

fn init_logs(format: LogFormat, filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(filter));
    // No ANSI colour codes in log files, journald or pipes: only when stderr is a terminal.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Plain => builder.init(),
    }
}

fn init(
    home: PathBuf,
    p2p_listen: Vec<String>,
    api_listen: Option<String>,
    bootstrap: Vec<String>,
    mdns: bool,
    unsafe_raw_publish: bool,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(&home).with_context(|| format!("cannot create {}", home.display()))?;
    let config_path = home.join(CONFIG_FILE);
    if config_path.exists() {
        anyhow::bail!("{} already exists; remove it or pick another --home", config_path.display());
    }
    let mut config = Config::default();
    if !p2p_listen.is_empty() {
        config.network.p2p_listen = p2p_listen;
    }
    if let Some(a) = api_listen {
        config.api.listen = a;
    }
    config.network.bootstrap = bootstrap;
    config.network.mdns = mdns;
    config.debug.unsafe_raw_publish = unsafe_raw_publish;
    for a in config.network.p2p_listen.iter().chain(&config.network.bootstrap) {
        a.parse::<libp2p::Multiaddr>().with_context(|| format!("bad multiaddress {a:?}"))?;
    }
    let key = identity::create(&home.join(IDENTITY_FILE))?;
    std::fs::write(&config_path, config.to_commented_toml())
        .with_context(|| format!("cannot write {}", config_path.display()))?;
    let peer_id = identity::to_libp2p(&key)?.public().to_peer_id();
    println!(
        "{}",
        serde_json::json!({
            "home": home,
            "peer_id": peer_id.to_string(),
            "node_key": key.public().to_hex(),
            "config": config_path,
        })
    );
    Ok(())
}

async fn wait_for_signal() -> anyhow::Result<&'static str> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        tokio::select! {
            _ = term.recv() => Ok("SIGTERM"),
            _ = int.recv() => Ok("SIGINT"),
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await?;
        Ok("ctrl-c")
    }
}

async fn run(
    home: PathBuf,
    log_format: Option<LogFormat>,
    api_listen: Option<String>,
    bootstrap: Vec<String>,
) -> anyhow::Result<()> {
    let mut config = Config::load(&home)?;
    if let Some(f) = log_format {
        config.log.format = f;
    }
    if let Some(a) = api_listen {
        config.api.listen = a;
    }
    config.network.bootstrap.extend(bootstrap);
    init_logs(config.log.format, &config.log.filter);
    let running = leasemesh_node::start(&home, config, Vec::new()).await?;
    let sig = wait_for_signal().await?;
    tracing::info!(signal = sig, "shutting down");
    running.shutdown().await;
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Cmd::Init { home, p2p_listen, api_listen, bootstrap, mdns, unsafe_raw_publish } => {
            init(home, p2p_listen, api_listen, bootstrap, mdns, unsafe_raw_publish)
        }
        Cmd::Run { home, log_format, api_listen, bootstrap } => {
            let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            rt.block_on(run(home, log_format, api_listen, bootstrap))
        }
        Cmd::Genesis(args) => {
            let g = args.write()?;
            println!(
                "{}",
                serde_json::json!({ "path": args.out, "genesis_digest": g.digest(), "settlers": g.settlers })
            );
            Ok(())
        }
    }
}
