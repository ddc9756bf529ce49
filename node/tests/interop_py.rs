//! A foreign libp2p implementation in the mesh: py-libp2p (PyPI `libp2p`, default config: strict
//! signing, from + seqno) joins two real leasemesh nodes on loopback, through
//! node/tests/interop/peer.py. `scripts/install-deps.sh` makes the venv it runs in.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{order, wait_for, TestNode};
use leasemesh_protocol::{Order, Signed};
use libp2p::gossipsub;
use serde_json::{json, Value};

const PEER_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/peer.py");
const ORDERS_TOPIC: &str = "/leasemesh/1/orders";
const INVALID_METRIC: &str = "leasemesh_gossipsub_invalid_messages_per_topic_total";
const VERDICT_METRIC: &str = "leasemesh_gossip_messages_total";

/// The venv python that scripts/install-deps.sh sets up (`LEASEMESH_INTEROP_PYTHON` overrides).
fn python() -> PathBuf {
    if let Ok(p) = std::env::var("LEASEMESH_INTEROP_PYTHON") {
        return PathBuf::from(p);
    }
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.venv-interop/bin/python");
    assert!(
        p.exists(),
        "{} is missing: run scripts/install-deps.sh (it makes the py-libp2p venv)",
        p.display()
    );
    p
}

/// The Python peer process, driven by JSON lines.
struct PyPeer {
    child: Child,
    stdin: ChildStdin,
    events: mpsc::Receiver<Value>,
    stderr: tempfile::NamedTempFile,
    peer_id: String,
}

impl PyPeer {
    fn start(connect: &[String]) -> PyPeer {
        let stderr = tempfile::NamedTempFile::new().unwrap();
        let mut cmd = Command::new(python());
        cmd.arg(PEER_SCRIPT);
        for a in connect {
            cmd.arg("--connect").arg(a);
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr.reopen().unwrap())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, events) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                match serde_json::from_str::<Value>(&line) {
                    Ok(v) => {
                        if tx.send(v).is_err() {
                            break;
                        }
                    }
                    Err(_) => eprintln!("python peer: {line}"),
                }
            }
        });
        let mut peer = PyPeer { child, stdin, events, stderr, peer_id: String::new() };
        let ready = peer.wait_event("the python peer to be ready", Duration::from_secs(60), |e| {
            e["event"] == "ready"
        });
        peer.peer_id = ready["peer_id"].as_str().unwrap().to_string();
        peer
    }

    fn send(&mut self, cmd: Value) {
        writeln!(self.stdin, "{cmd}").unwrap();
        self.stdin.flush().unwrap();
    }

    fn publish(&mut self, cmd: &str, data: &[u8]) {
        self.send(json!({ "cmd": cmd, "topic": ORDERS_TOPIC, "data_hex": hex::encode(data) }));
        let e = self.wait_event("the python peer to publish", Duration::from_secs(20), |e| {
            e["event"] == "published" || e["event"] == "error"
        });
        assert_eq!(e["event"], "published", "{e}");
    }

    /// The next event that `pred` accepts (others are skipped); panics on an error event.
    fn wait_event(&self, what: &str, timeout: Duration, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(e) if pred(&e) => return e,
                Ok(e) if e["event"] == "error" => {
                    panic!("python peer error while waiting for {what}: {e}")
                }
                Ok(_) => {}
                Err(_) => panic!("timed out after {timeout:?} waiting for {what}"),
            }
        }
    }
}

impl Drop for PyPeer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log = std::fs::read_to_string(self.stderr.path()).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            eprintln!("--- last stderr lines of the python peer ---");
            for l in tail.into_iter().rev() {
                eprintln!("{l}");
            }
        }
    }
}

/// leasemesh's gossip message id of a payload, as the node computes it.
fn gossip_id(data: &[u8]) -> String {
    let msg = gossipsub::Message {
        source: None,
        data: data.to_vec(),
        sequence_number: None,
        topic: gossipsub::IdentTopic::new(ORDERS_TOPIC).hash(),
    };
    hex::encode(leasemesh_node::net::behaviour::message_id(&msg).0)
}

/// A copy of `o` with a changed body under the original signature: decodes, fails the check.
fn tampered(o: &Signed<Order>) -> Signed<Order> {
    let mut t = o.clone();
    t.body.nonce += 1_000_000;
    t
}

/// py-libp2p, default-configured, joins a mesh of two nodes through node A: it receives an order
/// posted to node B (signed envelope, written by B, relayed by A), and an order it publishes
/// reaches both nodes' stores without its peer score falling. A message whose envelope signature
/// is broken is refused by gossipsub and counted; a tampered order is rejected by A and never
/// reaches B.
#[test]
fn a_py_libp2p_peer_trades_orders_with_the_mesh() {
    let a = TestNode::start("a", &[], false);
    let b = TestNode::start("b", &[a.multiaddr()], false);
    a.wait_meshed();
    b.wait_meshed();
    let mut py = PyPeer::start(&[a.multiaddr()]);

    // Rust to Python: B signs the envelope; the strict-signing Python peer takes it via A.
    let posted = order(1);
    let (code, body) = b.post_order(&posted);
    assert_eq!(code, 201, "{body}");
    let data_hex = hex::encode(posted.encode());
    let got =
        py.wait_event("the order posted to B at the python peer", Duration::from_secs(30), |e| {
            e["event"] == "message" && e["data_hex"] == data_hex.as_str()
        });
    assert_eq!(got["from"], b.peer_id.as_str(), "B wrote and signed the envelope");
    assert_eq!(got["id_hex"], gossip_id(&posted.encode()), "the documented message id rule");

    // Python to Rust: a fresh order that neither node has seen, signed here, sent from there.
    let fresh = order(2);
    assert!(!a.has_order(&fresh.id()) && !b.has_order(&fresh.id()));
    py.publish("publish", &fresh.encode());
    wait_for("the python peer's order on A and B", Duration::from_secs(30), || {
        (a.has_order(&fresh.id()) && b.has_order(&fresh.id())).then_some(())
    });
    assert_eq!(a.metric(INVALID_METRIC, &[]), 0.0, "a signed envelope is well formed");
    let score = a.score_of(&py.peer_id).expect("the python peer is connected to A");
    assert!(score >= 0.0, "a well-formed foreign message costs no score: {score}");

    // A broken envelope signature: gossipsub refuses it before the node sees it, and counts it.
    let enveloped = order(3);
    py.publish("publish_bad_envelope", &enveloped.encode());
    wait_for("A to count the refused envelope", Duration::from_secs(20), || {
        (a.metric(INVALID_METRIC, &[ORDERS_TOPIC]) == 1.0).then_some(())
    });
    assert!(!a.has_order(&enveloped.id()) && !b.has_order(&enveloped.id()));

    // A tampered copy of the fresh order: rejected by A as today, not forwarded to B.
    let bad = tampered(&fresh);
    py.publish("publish", &bad.encode());
    let rejected = [r#"topic="orders""#, r#"verdict="reject""#, r#"reason="bad_signature""#];
    wait_for("A to reject the tampered order", Duration::from_secs(20), || {
        (a.metric(VERDICT_METRIC, &rejected) == 1.0).then_some(())
    });
    assert!(!a.has_order(&bad.id()) && !b.has_order(&bad.id()));
    // B saw one order by gossip (the fresh one, from A): the tampered one never reached it.
    assert_eq!(b.metric(VERDICT_METRIC, &[r#"topic="orders""#]), 1.0);
    assert_eq!(b.metric(VERDICT_METRIC, &[r#"topic="orders""#, r#"verdict="accept""#]), 1.0);
    py.send(json!({ "cmd": "quit" }));
}
