//! Helpers for the multi-process tests: each node is a real `leasemesh-node` process with a temp
//! home, on free loopback ports, driven through its HTTP API.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use leasemesh_protocol::{samples, Bid, Coin, Id, Keypair, Order, Signed};
use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_leasemesh-node");

/// A UDP port nobody listens on right now (for QUIC).
pub fn free_udp_port() -> u16 {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    s.local_addr().unwrap().port()
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

pub fn now_ms() -> u64 {
    leasemesh_node::now_ms()
}

/// Polls `f` until it returns `Some`, or panics after `timeout` with `what`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        if start.elapsed() > timeout {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

#[derive(Debug)]
pub struct TestNode {
    pub name: String,
    pub home: tempfile::TempDir,
    pub api: String,
    pub p2p_port: u16,
    pub quic_port: u16,
    pub peer_id: String,
    child: Option<Child>,
}

impl TestNode {
    /// Inits a home and starts the node.
    pub fn start(name: &str, bootstrap: &[String], raw_publish: bool) -> TestNode {
        TestNode::start_with(name, bootstrap, raw_publish, &[])
    }

    /// Inits a home, sets `key = value` lines of its config.toml, and starts the node. A port
    /// picked free can be taken by another socket before the node binds it: then the node is
    /// set up again on fresh ports (at most three times).
    pub fn start_with(
        name: &str,
        bootstrap: &[String],
        raw_publish: bool,
        settings: &[(&str, &str)],
    ) -> TestNode {
        let mut attempt = 1;
        loop {
            let mut node = TestNode::init(name, bootstrap, raw_publish, settings);
            match node.try_run() {
                Ok(()) => return node,
                Err(e) if attempt < 3 && e.contains("in use") => {
                    eprintln!("{name}: a port was taken before the node bound it; new ports ({e})");
                    attempt += 1;
                }
                Err(e) => panic!("{name} did not start: {e}"),
            }
        }
    }

    fn init(
        name: &str,
        bootstrap: &[String],
        raw_publish: bool,
        settings: &[(&str, &str)],
    ) -> TestNode {
        let home = tempfile::tempdir().unwrap();
        let p2p_port = free_port();
        let quic_port = free_udp_port();
        let api_port = free_port();
        let mut cmd = Command::new(BIN);
        cmd.arg("init")
            .arg("--home")
            .arg(home.path())
            .arg("--p2p-listen")
            .arg(format!("/ip4/127.0.0.1/tcp/{p2p_port}"))
            .arg("--p2p-listen")
            .arg(format!("/ip4/127.0.0.1/udp/{quic_port}/quic-v1"))
            .arg("--api-listen")
            .arg(format!("127.0.0.1:{api_port}"));
        for b in bootstrap {
            cmd.arg("--bootstrap").arg(b);
        }
        if raw_publish {
            cmd.arg("--unsafe-raw-publish");
        }
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "init failed: {}", String::from_utf8_lossy(&out.stderr));
        let info: Value = serde_json::from_slice(&out.stdout).unwrap();
        let config_path = home.path().join("config.toml");
        let mut config = std::fs::read_to_string(&config_path).unwrap();
        for (key, value) in settings {
            let prefix = format!("{key} = ");
            let line = config.lines().find(|l| l.starts_with(&prefix)).unwrap().to_string();
            config = config.replace(&line, &format!("{key} = {value}"));
        }
        std::fs::write(&config_path, config).unwrap();
        TestNode {
            name: name.into(),
            home,
            api: format!("http://127.0.0.1:{api_port}"),
            p2p_port,
            quic_port,
            peer_id: info["peer_id"].as_str().unwrap().to_string(),
            child: None,
        }
    }

    pub fn log_path(&self) -> PathBuf {
        self.home.path().join("node.log")
    }

    /// Starts (or restarts) the process on the same home.
    /// Starts the node's process and waits until it answers; panics if it does not.
    pub fn run(&mut self) {
        if let Err(e) = self.try_run() {
            panic!("{} did not start: {e}", self.name);
        }
    }

    /// Starts the node's process and waits until it answers `/health`; `Err` with the end of
    /// its log if it exits first, or after 30 s.
    pub fn try_run(&mut self) -> Result<(), String> {
        let log =
            std::fs::OpenOptions::new().create(true).append(true).open(self.log_path()).unwrap();
        let child = Command::new(BIN)
            .arg("run")
            .arg("--home")
            .arg(self.home.path())
            .env("RUST_LOG", "info,leasemesh_node=debug")
            // A failed start then ends its log with the error itself, not a backtrace.
            .env("RUST_BACKTRACE", "0")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let start = Instant::now();
        loop {
            if self.get("/health").is_ok() {
                return Ok(());
            }
            let exited = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten());
            if let Some(status) = exited {
                self.child = None;
                let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(5).collect();
                return Err(format!("exited ({status}): {}", tail.join(" | ")));
            }
            if start.elapsed() > Duration::from_secs(30) {
                return Err("no answer to /health within 30 s".into());
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// SIGKILL: no chance to flush or say goodbye.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, then waits for a clean exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut c = self.child.take().unwrap();
        let ok = Command::new("kill").arg("-TERM").arg(c.id().to_string()).status().unwrap();
        assert!(ok.success());
        c.wait().unwrap()
    }

    pub fn multiaddr(&self) -> String {
        format!("/ip4/127.0.0.1/tcp/{}/p2p/{}", self.p2p_port, self.peer_id)
    }

    pub fn quic_multiaddr(&self) -> String {
        format!("/ip4/127.0.0.1/udp/{}/quic-v1/p2p/{}", self.quic_port, self.peer_id)
    }

    pub fn get(&self, path: &str) -> Result<Value, String> {
        let r = ureq::get(&format!("{}{path}", self.api))
            .timeout(Duration::from_secs(5))
            .call()
            .map_err(|e| e.to_string())?;
        r.into_json().map_err(|e| e.to_string())
    }

    pub fn get_text(&self, path: &str) -> String {
        ureq::get(&format!("{}{path}", self.api)).call().unwrap().into_string().unwrap()
    }

    /// POSTs JSON; returns the status and the JSON answer, whatever the status.
    pub fn post(&self, path: &str, body: Value) -> (u16, Value) {
        match ureq::post(&format!("{}{path}", self.api))
            .timeout(Duration::from_secs(30))
            .send_json(body)
        {
            Ok(r) => (r.status(), r.into_json().unwrap()),
            Err(ureq::Error::Status(code, r)) => (code, r.into_json().unwrap_or(Value::Null)),
            Err(e) => panic!("POST {path} on {}: {e}", self.name),
        }
    }

    pub fn post_order(&self, order: &Signed<Order>) -> (u16, Value) {
        self.post(
            "/v1/orders",
            serde_json::json!({ "signed_order_hex": hex::encode(order.encode()) }),
        )
    }

    pub fn status(&self) -> Value {
        self.get("/v1/status").unwrap()
    }

    pub fn has_order(&self, id: &Id) -> bool {
        self.get(&format!("/v1/orders/{id}")).is_ok()
    }

    /// Waits until the node has a peer in its orders mesh (so gossip can flow).
    pub fn wait_meshed(&self) {
        wait_for(
            &format!("{} to join the orders mesh", self.name),
            Duration::from_secs(30),
            || {
                let s = self.get("/v1/status").ok()?;
                (s["mesh"]["orders"].as_u64()? >= 1).then_some(())
            },
        );
    }

    /// The value of a metric line that starts with `prefix` (name and labels), summed.
    pub fn metric(&self, name: &str, label_filter: &[&str]) -> f64 {
        self.get_text("/metrics")
            .lines()
            .filter(|l| l.starts_with(name) && label_filter.iter().all(|f| l.contains(f)))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// The score this node gives `peer`, if connected.
    pub fn score_of(&self, peer: &str) -> Option<f64> {
        let s = self.status();
        s["connected_peers"]
            .as_array()?
            .iter()
            .find(|p| p["peer_id"] == peer)
            .and_then(|p| p["score"].as_f64())
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            eprintln!("--- last log lines of {} ---", self.name);
            for l in tail.into_iter().rev() {
                eprintln!("{l}");
            }
        }
    }
}

/// A live order (10-minute auction) with a unique nonce.
pub fn order(nonce: u64) -> Signed<Order> {
    let mut o = samples::order();
    o.nonce = nonce;
    o.created_at_ms = now_ms();
    o.bid_window_ms = 10 * 60 * 1000;
    Signed::sign(o, &samples::tenant_key())
}

/// A bid on `order_id` from provider key `label`.
pub fn bid(order_id: Id, label: &str, price: u128) -> Signed<Bid> {
    let key = Keypair::from_seed_label(label);
    let now = now_ms();
    Signed::sign(
        Bid {
            version: leasemesh_protocol::v(),
            order_id,
            provider: key.public(),
            price_per_hour: Coin::new("uakt", price),
            created_at_ms: now,
            expires_at_ms: now + 120_000,
        },
        &key,
    )
}
