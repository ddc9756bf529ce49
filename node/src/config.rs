//! The node's configuration: one TOML file in the home directory. Every field has a default, so
//! an empty file is a valid configuration; command-line flags override the file.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Name of the config file inside the home directory.
pub const CONFIG_FILE: &str = "config.toml";
/// Name of the identity key file inside the home directory (hex of the 32-byte ed25519 secret).
pub const IDENTITY_FILE: &str = "identity.key";

/// The whole configuration of a node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub network: NetworkConfig,
    pub api: ApiConfig,
    pub log: LogConfig,
    pub store: StoreConfig,
    pub debug: DebugConfig,
    /// `[settler]`: the genesis file, epoch matching and settlement.
    pub settler: crate::settler::SettlerConfig,
    /// `[provider]`: hosts, GPUs, pricing, bidding and the container runtime (off by default).
    pub provider: crate::provider::ProviderConfig,
}

/// The libp2p side: where to listen, whom to dial first, how many connections to hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NetworkConfig {
    /// Multiaddresses to listen on (TCP and QUIC).
    pub p2p_listen: Vec<String>,
    /// Peers to dial at start, as multiaddresses ending in `/p2p/<peer id>`.
    pub bootstrap: Vec<String>,
    /// Find peers on the local network with mDNS.
    pub mdns: bool,
    /// Most established connections in total.
    pub max_connections: u32,
    /// Most established connections to one peer.
    pub max_connections_per_peer: u32,
    /// Most incoming connections still in their handshake.
    pub max_pending_incoming: u32,
    /// Close a connection that carried nothing for this long, in seconds.
    pub idle_timeout_secs: u64,
    /// Dial peers found through Kademlia until this many are connected.
    pub target_peers: u32,
    /// Gossip messages per second accepted from one peer; more are ignored and cost the peer
    /// score.
    pub gossip_rate_per_sec: u32,
    /// Gossip messages one peer may send in a burst.
    pub gossip_rate_burst: u32,
    /// Sign the gossipsub envelope of every message this node publishes. Peers of other libp2p
    /// implementations on their default (strict signing) drop unsigned messages; every signed
    /// message costs each receiving node one more ed25519 check (docs/interop.md). Inbound, signed
    /// and unsigned messages are accepted either way.
    pub sign_gossip: bool,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        NetworkConfig {
            p2p_listen: vec![
                "/ip4/0.0.0.0/tcp/4001".into(),
                "/ip4/0.0.0.0/udp/4001/quic-v1".into(),
            ],
            bootstrap: Vec::new(),
            mdns: false,
            max_connections: 128,
            max_connections_per_peer: 2,
            max_pending_incoming: 64,
            idle_timeout_secs: 120,
            target_peers: 12,
            gossip_rate_per_sec: crate::net::scoring::GOSSIP_RATE_PER_SEC,
            gossip_rate_burst: crate::net::scoring::GOSSIP_RATE_BURST,
            sign_gossip: true,
        }
    }
}

/// The HTTP API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiConfig {
    /// Address of the HTTP API; loopback only unless you put a proxy in front.
    pub listen: String,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig { listen: "127.0.0.1:8420".into() }
    }
}

/// Log output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// "plain" for people, "json" for log collectors.
    pub format: LogFormat,
    /// A tracing filter, for example "info" or "leasemesh_node=debug,libp2p=info".
    pub filter: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig { format: LogFormat::Plain, filter: "info".into() }
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines (`text` is accepted too); colour only on a terminal.
    #[default]
    #[serde(alias = "text")]
    #[value(alias = "text")]
    Plain,
    /// One JSON object per line.
    Json,
}

/// The sled database.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// Database directory, relative to the home directory unless absolute.
    pub path: String,
    /// How often expired orders, bids and seen ids are removed, in seconds.
    pub gc_interval_secs: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig { path: "data".into(), gc_interval_secs: 60 }
    }
}

/// Switches for tests. Never turn them on in a real mesh.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct DebugConfig {
    /// Enables `POST /v1/debug/publish`, which gossips raw bytes without any check: used by the
    /// tests to play a misbehaving or flooding peer.
    pub unsafe_raw_publish: bool,
}

/// Why the configuration could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("cannot read {path}: {source} (run `leasemesh-node init --home DIR` first)")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a valid config: {source}")]
    Parse {
        path: PathBuf,
        #[source]
        source: toml::de::Error,
    },
    #[error("{path} already exists; remove it or pick another --home")]
    Exists { path: PathBuf },
}

impl Config {
    /// Reads `config.toml` from `home`.
    pub fn load(home: &Path) -> Result<Config, ConfigError> {
        let path = home.join(CONFIG_FILE);
        let text = std::fs::read_to_string(&path)
            .map_err(|source| ConfigError::Read { path: path.clone(), source })?;
        Config::parse(&text).map_err(|source| ConfigError::Parse { path, source })
    }

    /// Parses TOML text; missing fields take their defaults.
    pub fn parse(text: &str) -> Result<Config, toml::de::Error> {
        toml::from_str(text)
    }

    /// The database directory.
    pub fn store_path(&self, home: &Path) -> PathBuf {
        let p = Path::new(&self.store.path);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            home.join(p)
        }
    }

    /// The config as a TOML file with a comment above every field.
    pub fn to_commented_toml(&self) -> String {
        let s = |v: &str| toml::Value::String(v.to_string()).to_string();
        let list = |v: &[String]| {
            toml::Value::Array(v.iter().map(|x| toml::Value::String(x.clone())).collect())
                .to_string()
        };
        let fmt = match self.log.format {
            LogFormat::Plain => "plain",
            LogFormat::Json => "json",
        };
        let n = &self.network;
        format!(
            r#"# leasemesh node configuration. Every field is optional: a missing one takes the
# default shown here. Command-line flags override this file.

[network]
# Multiaddresses to listen on: TCP ("/ip4/0.0.0.0/tcp/4001") and QUIC
# ("/ip4/0.0.0.0/udp/4001/quic-v1").
p2p_listen = {listen}
# Peers to dial at start, each ending in /p2p/<peer id>.
bootstrap = {bootstrap}
# Find peers on the local network with mDNS.
mdns = {mdns}
# Most established connections in total.
max_connections = {maxc}
# Most established connections to one peer.
max_connections_per_peer = {maxp}
# Most incoming connections still in their handshake.
max_pending_incoming = {maxpend}
# Close a connection that carried nothing for this many seconds.
idle_timeout_secs = {idle}
# Dial peers found through Kademlia until this many are connected.
target_peers = {target}
# Gossip messages per second accepted from one peer; more are ignored and lower its score.
gossip_rate_per_sec = {rate}
# Gossip messages one peer may send in a burst.
gossip_rate_burst = {burst}
# Sign the gossip envelope of what this node publishes, so that go-libp2p and py-libp2p peers
# on their default (strict signing) accept it. Costs each receiver one ed25519 check per
# message; a mesh of leasemesh nodes only can turn it off (see docs/interop.md).
sign_gossip = {sign}

[api]
# Address of the HTTP API (JSON, server-sent events, /metrics). Keep it on loopback unless a
# proxy with authentication stands in front of it.
listen = {api}

[log]
# "plain" for people, "json" for log collectors.
format = {fmt}
# tracing filter, for example "info" or "leasemesh_node=debug,libp2p=info".
filter = {filter}

[store]
# sled database directory, relative to the home directory unless absolute.
path = {path}
# How often expired orders, bids and seen ids are removed, in seconds.
gc_interval_secs = {gc}

[debug]
# Enables POST /v1/debug/publish, which gossips raw bytes unchecked. Tests only: never in a
# real mesh.
unsafe_raw_publish = {raw}
"#,
            listen = list(&n.p2p_listen),
            bootstrap = list(&n.bootstrap),
            mdns = n.mdns,
            maxc = n.max_connections,
            maxp = n.max_connections_per_peer,
            maxpend = n.max_pending_incoming,
            idle = n.idle_timeout_secs,
            target = n.target_peers,
            rate = n.gossip_rate_per_sec,
            burst = n.gossip_rate_burst,
            sign = n.sign_gossip,
            api = s(&self.api.listen),
            fmt = s(fmt),
            filter = s(&self.log.filter),
            path = s(&self.store.path),
            gc = self.store.gc_interval_secs,
            raw = self.debug.unsafe_raw_publish,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_is_the_default() {
        assert_eq!(Config::parse("").unwrap(), Config::default());
    }

    #[test]
    fn commented_file_round_trips() {
        let mut c = Config::default();
        c.network.bootstrap = vec!["/ip4/127.0.0.1/tcp/1/p2p/12D3KooW".into()];
        c.api.listen = "127.0.0.1:9999".into();
        c.log.format = LogFormat::Json;
        c.debug.unsafe_raw_publish = true;
        let text = c.to_commented_toml();
        assert_eq!(Config::parse(&text).unwrap(), c);
    }

    #[test]
    fn unknown_fields_are_refused() {
        assert!(Config::parse("[network]\nmdsn = true\n").is_err());
    }

    /// Every section, the provider's included, written out in full, loads back unchanged: the
    /// key names the node writes are the ones it reads.
    #[test]
    fn the_whole_default_config_loads_back() {
        let mut c = Config::default();
        c.provider.enabled = true;
        c.provider.attributes.insert("region".into(), "eu-west".into());
        c.provider.pricing.command.argv = vec!["price.sh".into()];
        let text = toml::to_string(&c).unwrap();
        assert!(text.contains("[provider.runtime]"), "{text}");
        assert_eq!(Config::parse(&text).unwrap(), c);
        let init = Config::default().to_commented_toml();
        assert_eq!(Config::parse(&init).unwrap(), Config::default());
    }

    /// A typo in any `[provider]` key is a clear error, never a silently ignored setting.
    #[test]
    fn provider_typos_are_refused() {
        let cases = [
            ("[provider]\nenabeld = true\n", "enabeld"),
            ("[provider.runtime]\nrestart_polcy = \"no\"\n", "restart_polcy"),
            ("[[provider.hosts]]\nname = \"a\"\ncpu_milis = 1000\n", "cpu_milis"),
            ("[[provider.hosts]]\n[provider.hosts.system_reserved]\ncpu = 1\n", "cpu"),
            ("[[provider.hosts]]\n[[provider.hosts.gpus]]\nmodle = \"a100\"\n", "modle"),
            ("[provider.pricing]\nrate = 1\n", "rate"),
            ("[provider.pricing.rates.uakt]\ncpu_per_cores = 1\n", "cpu_per_cores"),
            ("[provider.pricing.command]\nargs = []\n", "args"),
        ];
        for (text, key) in cases {
            let err = Config::parse(text).expect_err(text).to_string();
            assert!(err.contains(&format!("unknown field `{key}`")), "{text}: {err}");
        }
    }

    /// `restart_policy` takes Docker's four spellings; a typo used to mean on-failure.
    #[test]
    fn restart_policy_is_one_of_four() {
        use crate::provider::runtime::RestartPolicy;
        for (word, policy) in [
            ("no", RestartPolicy::No),
            ("on-failure", RestartPolicy::OnFailure),
            ("always", RestartPolicy::Always),
            ("unless-stopped", RestartPolicy::UnlessStopped),
        ] {
            let c = Config::parse(&format!("[provider.runtime]\nrestart_policy = \"{word}\"\n"))
                .unwrap();
            assert_eq!(c.provider.runtime.restart_policy, policy);
        }
        let err = Config::parse("[provider.runtime]\nrestart_policy = \"alwyas\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown variant `alwyas`"), "{err}");
        assert!(err.contains("unless-stopped"), "the error lists the valid values: {err}");
    }
}
