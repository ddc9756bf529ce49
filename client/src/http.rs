//! HTTP to one node (blocking, `ureq`): submissions as canonical bytes, reads as JSON whose
//! signed objects are decoded from their exact bytes and verified here, so a node can withhold
//! but never forge what it shows the tenant.

use std::io::{BufRead, BufReader, Read};
use std::time::Duration;

use leasemesh_protocol::seal::SealedManifest;
use leasemesh_protocol::{
    Bid, Coin, Id, LeaseEvent, MatchBatch, Order, ProviderInfo, PublicKey, Signable, Signed,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{ClientError, Result};

/// The node's default API address (the node's `[api] listen` default).
pub const DEFAULT_NODE_URL: &str = "http://127.0.0.1:8420";

/// Longest wait for one ordinary request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A client of one node's HTTP API.
#[derive(Debug, Clone)]
pub struct NodeClient {
    base: String,
    agent: ureq::Agent,
}

/// What a node said about a submission.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Submitted {
    pub id: Id,
    /// False if the node stored the object but could not gossip it yet (no peers).
    #[serde(default)]
    pub published: bool,
}

/// A lease as a node records it (the award that made it and its state).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseRecord {
    pub lease_id: Id,
    pub order_id: Id,
    #[serde(default)]
    pub bid_id: Option<Id>,
    #[serde(default)]
    pub batch_id: Option<Id>,
    pub provider: PublicKey,
    #[serde(default)]
    pub tenant: Option<PublicKey>,
    #[serde(default)]
    pub price_per_hour: Option<Coin>,
    /// "awarded", "manifest_accepted", "running", "failed" or "closed".
    pub state: String,
    #[serde(default)]
    pub updated_at_ms: u64,
}

/// A lease with its signed events, each verified.
#[derive(Debug, Clone)]
pub struct LeaseDetail {
    pub lease: LeaseRecord,
    pub events: Vec<Signed<LeaseEvent>>,
}

/// One server-sent event: its name and JSON data.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeEvent {
    pub name: String,
    pub data: Value,
}

fn transport(url: &str, e: impl std::fmt::Display) -> ClientError {
    ClientError::Transport { url: url.to_owned(), reason: e.to_string() }
}

fn bad(url: &str, e: impl std::fmt::Display) -> ClientError {
    ClientError::BadAnswer { url: url.to_owned(), reason: e.to_string() }
}

/// Turns a ureq result into a response or a typed error with the node's error body.
fn answer(
    url: &str,
    r: std::result::Result<ureq::Response, ureq::Error>,
) -> Result<ureq::Response> {
    match r {
        Ok(resp) => Ok(resp),
        Err(ureq::Error::Status(status, resp)) => {
            let text = resp.into_string().unwrap_or_default();
            let (code, detail) = match serde_json::from_str::<Value>(&text) {
                Ok(v) => (
                    v.get("error").and_then(Value::as_str).unwrap_or("error").to_owned(),
                    v.get("detail").and_then(Value::as_str).unwrap_or(&text).to_owned(),
                ),
                Err(_) => ("error".to_owned(), text),
            };
            Err(ClientError::Api { url: url.to_owned(), status, code, detail })
        }
        Err(e) => Err(transport(url, e)),
    }
}

/// Decodes and verifies the signed object in a view's `signed_hex`.
pub fn decode_view<T: Signable>(v: &Value) -> Result<Signed<T>> {
    let hex_str =
        v.get("signed_hex").and_then(Value::as_str).ok_or_else(|| ClientError::BadAnswer {
            url: String::new(),
            reason: format!("{} without signed_hex", T::NAME),
        })?;
    let bytes = hex::decode(hex_str).map_err(|e| ClientError::BadAnswer {
        url: String::new(),
        reason: format!("signed_hex: {e}"),
    })?;
    Signed::<T>::decode_verified(&bytes)
        .map_err(|source| ClientError::Unverified { what: T::NAME, source })
}

fn decode_views<T: Signable>(v: &Value) -> Result<Vec<Signed<T>>> {
    match v.as_array() {
        Some(items) => items.iter().map(decode_view).collect(),
        None => Err(ClientError::BadAnswer {
            url: String::new(),
            reason: format!("expected a list of {}", T::NAME),
        }),
    }
}

impl NodeClient {
    /// A client of the node at `base` (for example `http://127.0.0.1:8420`).
    pub fn new(base: &str) -> NodeClient {
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .build();
        NodeClient { base: base.trim_end_matches('/').to_owned(), agent }
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// GET an absolute URL and parse JSON.
    pub fn get_json_url(&self, url: &str) -> Result<Value> {
        let resp = answer(url, self.agent.get(url).call())?;
        resp.into_json::<Value>().map_err(|e| bad(url, e))
    }

    /// GET an absolute URL as text (NDJSON log streams, for example).
    pub fn get_text_url(&self, url: &str) -> Result<String> {
        let resp = answer(url, self.agent.get(url).call())?;
        resp.into_string().map_err(|e| bad(url, e))
    }

    /// GET a path of this node and parse JSON.
    pub fn get_json(&self, path: &str) -> Result<Value> {
        self.get_json_url(&self.url(path))
    }

    /// POST JSON to a path of this node and parse the JSON answer.
    pub fn post_json(&self, path: &str, body: &Value) -> Result<Value> {
        let url = self.url(path);
        let resp = answer(&url, self.agent.post(&url).send_json(body.clone()))?;
        resp.into_json::<Value>().map_err(|e| bad(&url, e))
    }

    /// POST raw bytes (`application/octet-stream`) to an absolute URL.
    pub fn post_bytes_url(&self, url: &str, bytes: &[u8]) -> Result<Value> {
        let req = self.agent.post(url).set("Content-Type", "application/octet-stream");
        let resp = answer(url, req.send_bytes(bytes))?;
        let text = resp.into_string().map_err(|e| bad(url, e))?;
        if text.trim().is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&text).map_err(|e| bad(url, e))
    }

    fn submit<T: Signable>(&self, path: &str, signed: &Signed<T>) -> Result<Submitted> {
        let url = self.url(path);
        let v = self.post_bytes_url(&url, &signed.encode())?;
        serde_json::from_value(v).map_err(|e| bad(&url, e))
    }

    /// `GET /health`.
    pub fn health(&self) -> Result<()> {
        self.get_json("/health").map(|_| ())
    }

    /// `GET /v1/status`.
    pub fn status(&self) -> Result<Value> {
        self.get_json("/v1/status")
    }

    /// `POST /v1/orders`.
    pub fn submit_order(&self, order: &Signed<Order>) -> Result<Submitted> {
        self.submit("/v1/orders", order)
    }

    /// `POST /v1/lease-events` (a tenant closing its lease).
    pub fn submit_lease_event(&self, ev: &Signed<LeaseEvent>) -> Result<Submitted> {
        self.submit("/v1/lease-events", ev)
    }

    /// `GET /v1/orders[?all=true]`, every order verified.
    pub fn orders(&self, all: bool) -> Result<Vec<Signed<Order>>> {
        let path = if all { "/v1/orders?all=true" } else { "/v1/orders" };
        decode_views(&self.get_json(path)?)
    }

    /// `GET /v1/orders/{id}`.
    pub fn order(&self, id: &Id) -> Result<Signed<Order>> {
        decode_view(&self.get_json(&format!("/v1/orders/{id}"))?)
    }

    /// `GET /v1/orders/{id}/bids`, every bid verified and checked to answer this order.
    pub fn bids(&self, order_id: &Id) -> Result<Vec<Signed<Bid>>> {
        let bids: Vec<Signed<Bid>> =
            decode_views(&self.get_json(&format!("/v1/orders/{order_id}/bids"))?)?;
        Ok(bids.into_iter().filter(|b| b.body.order_id == *order_id).collect())
    }

    /// `GET /v1/providers`, every provider info verified.
    pub fn providers(&self) -> Result<Vec<Signed<ProviderInfo>>> {
        decode_views(&self.get_json("/v1/providers")?)
    }

    /// The latest info of one provider, if the node knows it.
    pub fn provider(&self, key: &PublicKey) -> Result<Option<Signed<ProviderInfo>>> {
        Ok(self
            .providers()?
            .into_iter()
            .filter(|p| p.body.provider == *key)
            .max_by_key(|p| p.body.sequence))
    }

    /// `GET /v1/leases`.
    pub fn leases(&self) -> Result<Vec<LeaseRecord>> {
        let url = self.url("/v1/leases");
        serde_json::from_value(self.get_json_url(&url)?).map_err(|e| bad(&url, e))
    }

    /// `GET /v1/leases/{id}`: the lease and its events, each event verified.
    pub fn lease(&self, id: &Id) -> Result<LeaseDetail> {
        let url = self.url(&format!("/v1/leases/{id}"));
        let v = self.get_json_url(&url)?;
        let lease = serde_json::from_value(v.get("lease").cloned().unwrap_or(Value::Null))
            .map_err(|e| bad(&url, e))?;
        let events = decode_views(v.get("events").unwrap_or(&Value::Null))?;
        Ok(LeaseDetail { lease, events })
    }

    /// `GET /v1/batches/{epoch}`: the match batch this node accepted for an epoch, verified.
    /// `None` if it has none for that epoch.
    pub fn match_batch(&self, epoch: u64) -> Result<Option<Signed<MatchBatch>>> {
        match self.get_json(&format!("/v1/batches/{epoch}")) {
            Ok(v) => decode_view(&v).map(Some),
            Err(ClientError::Api { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `GET /v1/settler/status` (nodes with a genesis).
    pub fn settler_status(&self) -> Result<Value> {
        self.get_json("/v1/settler/status")
    }

    /// Delivers a sealed manifest to the winning provider's API.
    pub fn send_manifest(
        &self,
        provider_api: &str,
        lease_id: &Id,
        sealed: &SealedManifest,
    ) -> Result<Value> {
        let url = format!("{}/v1/leases/{lease_id}/manifest", provider_api.trim_end_matches('/'));
        self.post_bytes_url(&url, &sealed.encode())
    }

    /// Opens the node's server-sent event stream (`GET /v1/events`). Events that happen after
    /// this returns are delivered; read them with [`EventStream::next_event`].
    pub fn events(&self) -> Result<EventStream> {
        let url = self.url("/v1/events");
        // No overall timeout: the stream lives as long as the caller reads it.
        let agent = ureq::AgentBuilder::new().timeout_connect(CONNECT_TIMEOUT).build();
        let resp = answer(&url, agent.get(&url).set("Accept", "text/event-stream").call())?;
        Ok(EventStream { reader: BufReader::new(resp.into_reader()) })
    }
}

/// A server-sent event stream.
pub struct EventStream {
    reader: BufReader<Box<dyn Read + Send + Sync + 'static>>,
}

impl std::fmt::Debug for EventStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventStream").finish_non_exhaustive()
    }
}

impl EventStream {
    /// The next event, `None` when the node closed the stream.
    pub fn next_event(&mut self) -> Option<NodeEvent> {
        let mut name = String::new();
        let mut data = String::new();
        let mut line = String::new();
        loop {
            line.clear();
            match self.reader.read_line(&mut line) {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
            let l = line.trim_end_matches(['\r', '\n']);
            if l.is_empty() {
                if data.is_empty() && name.is_empty() {
                    continue;
                }
                let data_v = serde_json::from_str(&data).unwrap_or(Value::String(data.clone()));
                return Some(NodeEvent {
                    name: if name.is_empty() { "message".into() } else { name },
                    data: data_v,
                });
            }
            if let Some(v) = l.strip_prefix("event:") {
                name = v.trim().to_owned();
            } else if let Some(v) = l.strip_prefix("data:") {
                if !data.is_empty() {
                    data.push('\n');
                }
                data.push_str(v.strip_prefix(' ').unwrap_or(v));
            }
        }
    }
}
