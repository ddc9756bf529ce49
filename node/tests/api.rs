//! One real node process: the home `init` writes, the HTTP API's answers and errors, live
//! events over SSE, and a clean exit on SIGTERM.

mod common;

use std::io::{BufRead, BufReader};

use common::{bid, order, TestNode};
use leasemesh_protocol::Signed;
use serde_json::json;

#[test]
fn single_node_api_answers_and_refuses_with_json_errors() {
    let mut node = TestNode::start("solo", &[], false);

    // init wrote a commented config and an identity only the owner can read.
    let config = std::fs::read_to_string(node.home.path().join("config.toml")).unwrap();
    assert!(config.contains("# Gossip messages per second accepted from one peer"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(node.home.path().join("identity.key")).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    }
    let status = node.status();
    assert_eq!(status["peer_id"], node.peer_id);
    assert_eq!(node.get("/health").unwrap()["status"], "ok");

    // Live events: subscribe before posting.
    let sse = ureq::get(&format!("{}/v1/events", node.api)).call().unwrap();
    let mut lines = BufReader::new(sse.into_reader()).lines();

    let o = order(1);
    let (code, body) = node.post_order(&o);
    assert_eq!(code, 201, "{body}");
    // Raw bytes work too, and a second copy is a conflict.
    let raw = ureq::post(&format!("{}/v1/orders", node.api))
        .set("Content-Type", "application/octet-stream")
        .send_bytes(&o.encode());
    match raw {
        Err(ureq::Error::Status(409, r)) => {
            let v: serde_json::Value = r.into_json().unwrap();
            assert_eq!(v["error"], "duplicate");
        }
        other => panic!("expected 409, got {other:?}"),
    }
    let event = loop {
        let line = lines.next().unwrap().unwrap();
        if let Some(data) = line.strip_prefix("data:") {
            break serde_json::from_str::<serde_json::Value>(data.trim()).unwrap();
        }
    };
    assert_eq!(event["type"], "order");
    assert_eq!(event["id"], o.id().to_hex());

    // Errors: bad hex 400, garbage 400, forged 422, missing field 400, unknown order 404.
    let (code, body) = node.post("/v1/orders", json!({ "signed_hex": "zz" }));
    assert_eq!((code, body["error"].as_str()), (400, Some("bad_hex")));
    let (code, body) = node.post("/v1/orders", json!({ "signed_hex": "0102" }));
    assert_eq!((code, body["error"].as_str()), (400, Some("malformed")));
    let mut forged = order(2);
    forged.sig.0[0] ^= 1;
    let (code, body) = node.post_order(&forged);
    assert_eq!((code, body["error"].as_str()), (422, Some("bad_signature")), "{body}");
    assert!(body["detail"].as_str().unwrap().contains("signature"));
    let (code, _) = node.post("/v1/orders", json!({ "nope": 1 }));
    assert_eq!(code, 400);
    let missing = order(3).id();
    assert!(node.get(&format!("/v1/orders/{missing}")).unwrap_err().contains("404"));

    // A bid over the order's max price is refused; a fair one is listed under the order.
    let dear = bid(o.id(), "p1", 10_000_000);
    let (code, body) =
        node.post("/v1/bids", json!({ "signed_bid_hex": hex::encode(dear.encode()) }));
    assert_eq!((code, body["error"].as_str()), (422, Some("price_over_max")), "{body}");
    let fair = bid(o.id(), "p1", 1_000);
    let (code, _) = node.post("/v1/bids", json!({ "signed_hex": hex::encode(fair.encode()) }));
    assert_eq!(code, 201);
    let bids = node.get(&format!("/v1/orders/{}/bids", o.id())).unwrap();
    assert_eq!(bids[0]["id"], fair.id().to_hex());
    let listed = node.get("/v1/orders").unwrap();
    assert_eq!(listed[0]["signed_hex"], hex::encode(o.encode()));
    let back = Signed::<leasemesh_protocol::Order>::decode(
        &hex::decode(listed[0]["signed_hex"].as_str().unwrap()).unwrap(),
    )
    .unwrap();
    assert_eq!(back, o);

    let metrics = node.get_text("/metrics");
    assert!(metrics.contains("leasemesh_api_submissions_total{kind=\"order\"} 1"), "{metrics}");
    assert!(node.status()["store"]["orders"] == 1);

    // SIGTERM: a clean exit, and the store opens again with the order in it.
    let exit = node.terminate();
    assert!(exit.success(), "{exit}");
    node.run();
    assert!(node.has_order(&o.id()));
}
