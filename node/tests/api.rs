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
    assert_eq!(listed["items"][0]["signed_hex"], hex::encode(o.encode()));
    assert_eq!(listed["items"][0]["live"], true);
    assert!(listed.get("next").is_none_or(|n| n.is_null()), "one order: one page {listed}");
    let back = Signed::<leasemesh_protocol::Order>::decode(
        &hex::decode(listed["items"][0]["signed_hex"].as_str().unwrap()).unwrap(),
    )
    .unwrap();
    assert_eq!(back, o);

    let metrics = node.get_text("/metrics");
    assert!(metrics.contains("leasemesh_api_submissions_total{kind=\"order\"} 1"), "{metrics}");
    assert!(metrics.contains("leasemesh_store_orders 1"), "{metrics}");
    assert!(node.status()["store"]["orders"] == 1);
    assert!(node.status()["store"]["bids"] == 1);

    // SIGTERM: a clean exit, and the store opens again with the order in it.
    let exit = node.terminate();
    assert!(exit.success(), "{exit}");
    node.run();
    assert!(node.has_order(&o.id()));
}

/// `GET /v1/orders` is paged: a default page, `limit` and `after` walk every order once in id
/// order, and a limit out of range or a bad cursor is a 400 that names the problem.
#[test]
fn order_listing_is_paged_and_refuses_bad_limits() {
    let node = TestNode::start("pager", &[], false);
    let mut ids = Vec::new();
    for nonce in 10..15 {
        let o = order(nonce);
        let (code, body) = node.post_order(&o);
        assert_eq!(code, 201, "{body}");
        ids.push(o.id().to_hex());
    }
    ids.sort();

    let all = node.get("/v1/orders").unwrap();
    assert_eq!(all["items"].as_array().unwrap().len(), 5, "the default page holds all five");
    assert!(all.get("next").is_none_or(|n| n.is_null()), "{all}");

    let mut seen = Vec::new();
    let mut path = "/v1/orders?limit=2".to_string();
    let mut pages = 0;
    loop {
        let page = node.get(&path).unwrap();
        let items = page["items"].as_array().unwrap();
        assert!(items.len() <= 2, "{page}");
        seen.extend(items.iter().map(|o| o["id"].as_str().unwrap().to_string()));
        pages += 1;
        match page["next"].as_str() {
            Some(next) => path = format!("/v1/orders?limit=2&after={next}"),
            None => break,
        }
    }
    assert_eq!((seen, pages), (ids.clone(), 3));

    for (query, code) in
        [("limit=0", "bad_limit"), ("limit=1001", "bad_limit"), ("after=zz", "bad_cursor")]
    {
        let err = ureq::get(&format!("{}/v1/orders?{query}", node.api)).call();
        match err {
            Err(ureq::Error::Status(400, r)) => {
                let v: serde_json::Value = r.into_json().unwrap();
                assert_eq!(v["error"], code, "{query}: {v}");
            }
            other => panic!("{query}: expected 400, got {other:?}"),
        }
    }
    assert_eq!(node.get("/v1/leases?limit=1000").unwrap()["items"], json!([]));
    assert_eq!(node.get("/v1/providers?limit=1").unwrap()["items"], json!([]));

    // The light client pages through on its own: two at a time, it still sees all five,
    // each decoded from its signed bytes and verified.
    let client = leasemesh_client::NodeClient::new(&node.api).with_page_limit(2);
    let mut listed: Vec<String> =
        client.orders(false).unwrap().iter().map(|o| o.id().to_hex()).collect();
    listed.sort();
    assert_eq!(listed, ids);
    let status = client.status().unwrap();
    assert_eq!((status.store.orders, status.peer_id), (5, node.peer_id.clone()));
}
