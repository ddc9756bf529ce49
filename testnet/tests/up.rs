//! `leasemesh-testnet up` as a user runs it: start it (embedded ledger), run the `leasemesh`
//! commands it prints (deploy, list, logs, close, verify) through the client binary, stop it
//! with SIGINT, and check it removed everything it made: node processes, containers, networks,
//! the mesh directory.
//!
//! Needs the Docker daemon. The node and client binaries are taken from the target directory
//! (built with cargo when missing).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::io::BufRead as _;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context as _};
use bollard::query_parameters::{ListContainersOptionsBuilder, ListNetworksOptionsBuilder};
use serde_json::Value;

/// Stops `up` with SIGINT if the test fails before it does.
struct Up(Child);

impl Drop for Up {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            sigint(&self.0);
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline && matches!(self.0.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn sigint(c: &Child) {
    let pid = nix::unistd::Pid::from_raw(i32::try_from(c.id()).unwrap());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
}

/// Runs one printed command line (whitespace-separated words) and returns its stdout.
fn run(line: &str) -> anyhow::Result<String> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let (bin, args) = words.split_first().ok_or_else(|| anyhow!("empty command"))?;
    let out = Command::new(bin).args(args).output().with_context(|| format!("running {line}"))?;
    ensure!(
        out.status.success(),
        "{line} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8(out.stdout)?)
}

#[test]
fn up_serves_the_printed_commands_and_cleans_up_on_ctrl_c() -> anyhow::Result<()> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_leasemesh-testnet"))
        .args(["up", "--providers", "1"])
        // Use the binaries in the target directory as they are (no cargo build under test).
        .env_remove("CARGO")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let stdout = child.stdout.take().unwrap();
    let up = Up(child);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut text = String::new();
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = rx.recv_timeout(left).map_err(|_| anyhow!("no `ready` line; got:\n{text}"))?;
        text.push_str(&line);
        text.push('\n');
        if line == "ready" {
            break;
        }
    }
    let commands: HashMap<String, String> = text
        .lines()
        .filter_map(|l| {
            let (what, cmd) = l.trim().split_once("$ ")?;
            Some((what.trim().to_owned(), cmd.trim().to_owned()))
        })
        .collect();
    for what in ["deploy", "list", "logs", "close", "verify"] {
        ensure!(commands.contains_key(what), "no {what} command in:\n{text}");
    }
    let dir = leasemesh_testnet::up::printed_dir(&text).ok_or_else(|| anyhow!("no mesh dir"))?;
    ensure!(dir.join("tenant/tenant.key").exists(), "the tenant key file is not there");
    let owner = text
        .lines()
        .find_map(|l| l.split_once("leasemesh.owner=").map(|(_, o)| o.trim().to_owned()))
        .ok_or_else(|| anyhow!("no owner label"))?;
    let node_urls: Vec<String> = text
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1).filter(|u| u.starts_with("http://")))
        .map(str::to_owned)
        .collect();
    ensure!(node_urls.len() == 3, "settler, provider, relay expected: {node_urls:?}");

    // The printed commands, as printed (LEASE_ID filled in once deploy gave it).
    let deployed: Value = serde_json::from_str(run(&commands["deploy"])?.trim())?;
    let lease = deployed
        .pointer("/leases/0/lease_id")
        .and_then(Value::as_str)
        .ok_or_else(|| anyhow!("deploy printed no lease: {deployed}"))?
        .to_owned();
    let endpoint = deployed.pointer("/leases/0/endpoints/0").and_then(Value::as_str).unwrap();
    let page = leasemesh_testnet::demo::fetch_page(endpoint, Duration::from_secs(10))?;
    assert!(page.contains("leasemesh demo"), "{page}");
    let with_id = |what: &str| commands[what].replace("LEASE_ID", &lease);
    let list = run(&commands["list"])?;
    assert!(list.contains(&lease) && list.contains("running"), "{list}");
    // The server prints the SDL's GREETING at start: the logs come from the lease's container.
    let logs = run(&with_id("logs"))?;
    assert!(logs.contains("hello from leasemesh"), "{logs}");
    run(&with_id("close"))?;
    let deadline = Instant::now() + Duration::from_secs(60);
    let verified = loop {
        match run(&with_id("verify")) {
            Ok(v) => break v,
            Err(e) if Instant::now() > deadline => return Err(e),
            Err(_) => std::thread::sleep(Duration::from_millis(500)),
        }
    };
    assert!(verified.contains("verified"), "{verified}");

    // A second lease left running: Ctrl-C must remove its container and network too.
    run(&commands["deploy"])?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let (containers, _) = owned(&rt, &owner)?;
    assert!(containers >= 1, "the running lease has no container labelled {owner}");

    // Ctrl-C: everything goes.
    let mut up = up;
    sigint(&up.0);
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = up.0.try_wait()? {
            break s;
        }
        if Instant::now() > deadline {
            bail!("up did not stop within 60 s of SIGINT");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "up exited with {status}");
    assert!(!dir.exists(), "{} is still there", dir.display());
    for url in &node_urls {
        let answered = leasemesh_client::NodeClient::new(url).health().is_ok();
        assert!(!answered, "node {url} still answers");
    }
    assert_eq!(owned(&rt, &owner)?, (0, 0), "containers/networks of {owner} are left");
    Ok(())
}

/// (containers, networks) that belong to `owner`.
fn owned(rt: &tokio::runtime::Runtime, owner: &str) -> anyhow::Result<(usize, usize)> {
    rt.block_on(async {
        let d = leasemesh_testnet::demo::docker().await?;
        let filters: HashMap<String, Vec<String>> =
            [("label".to_string(), vec![format!("leasemesh.owner={owner}")])].into();
        let opts = ListContainersOptionsBuilder::default().all(true).filters(&filters).build();
        let c = d.list_containers(Some(opts)).await?.len();
        let prefix = format!("{owner}-");
        let n = d
            .list_networks(Some(ListNetworksOptionsBuilder::default().build()))
            .await?
            .into_iter()
            .filter(|n| n.name.as_deref().is_some_and(|x| x.starts_with(&prefix)))
            .count();
        anyhow::Ok((c, n))
    })
}
