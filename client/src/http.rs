//! HTTP to one node (blocking, `ureq`): submissions as canonical bytes, reads as JSON whose
//! signed objects are decoded from their exact bytes and verified here, so a node can withhold
//! but never forge what it shows the tenant.

use std::io::{BufRead, BufReader, Read};
use std::time::Duration;

use leasemesh_protocol::api::{self, Page, SignedView, MAX_PAGE_LIMIT};
pub use leasemesh_protocol::api::{LeaseRecord, LeaseState, NodeEvent, Status, Submitted};
use leasemesh_protocol::seal::SealedManifest;
use leasemesh_protocol::{
    Bid, Id, LeaseEvent, MatchBatch, Order, ProviderInfo, PublicKey, Signable, Signed,
};
use serde::de::DeserializeOwned;
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
    /// Items asked for per page of a listing.
    page_limit: usize,
}

/// A lease with its signed events, each verified.
#[derive(Debug, Clone)]
pub struct LeaseDetail {
    pub lease: LeaseRecord,
    pub events: Vec<Signed<LeaseEvent>>,
}

/// One item of the node's event stream.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StreamEvent {
    /// Something happened on the node.
    Node(NodeEvent),
    /// This subscriber fell behind and the node skipped `missed` events: poll to catch up.
    Lagged { missed: u64 },
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
            let (code, detail) = match serde_json::from_str::<api::ErrorBody>(&text) {
                Ok(b) => (b.error, b.detail),
                // Not the node's error body (a proxy in between, for example): keep the text.
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

/// Decodes and verifies the signed object of a typed view, and checks that the id the node
/// gave is the object's.
pub fn verify_view<T: Signable, X>(v: &SignedView<T, X>) -> Result<Signed<T>> {
    let bytes = hex::decode(&v.signed_hex).map_err(|e| ClientError::BadAnswer {
        url: String::new(),
        reason: format!("signed_hex: {e}"),
    })?;
    let signed = Signed::<T>::decode_verified(&bytes)
        .map_err(|source| ClientError::Unverified { what: T::NAME, source })?;
    if signed.id() != v.id {
        return Err(ClientError::BadAnswer {
            url: String::new(),
            reason: format!("{} listed as {} is {}", T::NAME, v.id, signed.id()),
        });
    }
    Ok(signed)
}

fn verify_views<T: Signable, X>(views: &[SignedView<T, X>]) -> Result<Vec<Signed<T>>> {
    views.iter().map(verify_view).collect()
}

impl NodeClient {
    /// A client of the node at `base` (for example `http://127.0.0.1:8420`).
    pub fn new(base: &str) -> NodeClient {
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .build();
        NodeClient {
            base: base.trim_end_matches('/').to_owned(),
            agent,
            page_limit: MAX_PAGE_LIMIT,
        }
    }

    /// The same client asking for `limit` items per page of a listing (at most
    /// [`MAX_PAGE_LIMIT`], which is the default).
    pub fn with_page_limit(mut self, limit: usize) -> NodeClient {
        self.page_limit = limit.clamp(1, MAX_PAGE_LIMIT);
        self
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

    /// GET a path of this node as the answer type `T`.
    fn get_typed<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        let url = self.url(path);
        let resp = answer(&url, self.agent.get(&url).call())?;
        resp.into_json::<T>().map_err(|e| bad(&url, e))
    }

    /// Every item of a paged listing (`path` without a query, or ending in `?...`), page after
    /// page of `page_limit` items (the largest size the node accepts unless set otherwise). A node whose cursor does not move forward is
    /// a bad answer, not an endless loop.
    fn all_pages<T: DeserializeOwned>(&self, path: &str) -> Result<Vec<T>> {
        let sep = if path.contains('?') { '&' } else { '?' };
        let mut items = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page_path = match &after {
                Some(a) => format!("{path}{sep}limit={}&after={a}", self.page_limit),
                None => format!("{path}{sep}limit={}", self.page_limit),
            };
            let page: Page<T> = self.get_typed(&page_path)?;
            items.extend(page.items);
            match page.next {
                None => return Ok(items),
                Some(next) if after.as_ref().is_some_and(|a| next.as_str() <= a.as_str()) => {
                    return Err(bad(
                        &self.url(&page_path),
                        format!("the next-page cursor {next} does not move forward"),
                    ))
                }
                Some(next) => after = Some(next),
            }
        }
    }

    fn submit<T: Signable>(&self, path: &str, signed: &Signed<T>) -> Result<Submitted> {
        let url = self.url(path);
        let v = self.post_bytes_url(&url, &signed.encode())?;
        serde_json::from_value(v).map_err(|e| bad(&url, e))
    }

    /// `GET /health`.
    pub fn health(&self) -> Result<()> {
        self.get_typed::<api::Health>("/health").map(|_| ())
    }

    /// `GET /v1/status`.
    pub fn status(&self) -> Result<Status> {
        self.get_typed("/v1/status")
    }

    /// `POST /v1/orders`.
    pub fn submit_order(&self, order: &Signed<Order>) -> Result<Submitted> {
        self.submit("/v1/orders", order)
    }

    /// `POST /v1/lease-events` (a tenant closing its lease).
    pub fn submit_lease_event(&self, ev: &Signed<LeaseEvent>) -> Result<Submitted> {
        self.submit("/v1/lease-events", ev)
    }

    /// `GET /v1/orders[?all=true]`, every page, every order verified.
    pub fn orders(&self, all: bool) -> Result<Vec<Signed<Order>>> {
        let path = if all { "/v1/orders?all=true" } else { "/v1/orders" };
        let views: Vec<SignedView<Order, api::OrderExtra>> = self.all_pages(path)?;
        verify_views(&views)
    }

    /// `GET /v1/orders/{id}`.
    pub fn order(&self, id: &Id) -> Result<Signed<Order>> {
        let view: SignedView<Order, api::OrderExtra> =
            self.get_typed(&format!("/v1/orders/{id}"))?;
        verify_view(&view)
    }

    /// `GET /v1/orders/{id}/bids`, every bid verified and checked to answer this order.
    pub fn bids(&self, order_id: &Id) -> Result<Vec<Signed<Bid>>> {
        let views: Vec<SignedView<Bid>> = self.get_typed(&format!("/v1/orders/{order_id}/bids"))?;
        let bids = verify_views(&views)?;
        Ok(bids.into_iter().filter(|b| b.body.order_id == *order_id).collect())
    }

    /// `GET /v1/providers`, every page, every provider info verified.
    pub fn providers(&self) -> Result<Vec<Signed<ProviderInfo>>> {
        let views: Vec<SignedView<ProviderInfo, api::ProviderExtra>> =
            self.all_pages("/v1/providers")?;
        verify_views(&views)
    }

    /// The latest info of one provider, if the node knows it.
    pub fn provider(&self, key: &PublicKey) -> Result<Option<Signed<ProviderInfo>>> {
        Ok(self
            .providers()?
            .into_iter()
            .filter(|p| p.body.provider == *key)
            .max_by_key(|p| p.body.sequence))
    }

    /// `GET /v1/leases`, every page. A lease in a state this client does not know is a bad
    /// answer, not a default.
    pub fn leases(&self) -> Result<Vec<LeaseRecord>> {
        self.all_pages("/v1/leases")
    }

    /// `GET /v1/leases/{id}`: the lease and its events, each event verified.
    pub fn lease(&self, id: &Id) -> Result<LeaseDetail> {
        let d: api::LeaseDetail = self.get_typed(&format!("/v1/leases/{id}"))?;
        let events = verify_views(&d.events)?;
        Ok(LeaseDetail { lease: d.lease, events })
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

/// Reads one server-sent event's name and data into a typed event.
pub fn parse_event(name: &str, data: &str) -> Result<StreamEvent> {
    if name == api::LAGGED_EVENT {
        let missed = data.trim().parse().map_err(|e| bad("/v1/events", format!("lagged: {e}")))?;
        return Ok(StreamEvent::Lagged { missed });
    }
    let ev: NodeEvent = serde_json::from_str(data)
        .map_err(|e| bad("/v1/events", format!("event {name:?}: {e}")))?;
    if ev.name() != name {
        return Err(bad("/v1/events", format!("event {name:?} carries a {} event", ev.name())));
    }
    Ok(StreamEvent::Node(ev))
}

impl EventStream {
    /// The next event, `None` when the node closed the stream. An event this client cannot
    /// read is an `Err` item; the stream goes on after it.
    pub fn next_event(&mut self) -> Option<Result<StreamEvent>> {
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
                let name = if name.is_empty() { "message" } else { name.as_str() };
                return Some(parse_event(name, &data));
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;

    #[test]
    fn events_are_typed_and_bad_ones_are_errors() {
        let id = Id::domain("t", &[b"1"]);
        let ev = NodeEvent::Lease { lease_id: id, event_id: id, state: LeaseState::Running };
        let data = serde_json::to_string(&ev).unwrap();
        assert_eq!(parse_event("lease", &data).unwrap(), StreamEvent::Node(ev));
        assert_eq!(parse_event("lagged", "7").unwrap(), StreamEvent::Lagged { missed: 7 });
        assert!(parse_event("bid", &data).is_err(), "the name must match the data");
        let typo = data.replace("running", "runing");
        assert!(parse_event("lease", &typo).is_err(), "an unknown state is not a default");
        assert!(parse_event("lease", "not json").is_err());
    }

    /// A node that answers every page with the same cursor gets an error, not an endless loop.
    #[test]
    fn a_cursor_that_does_not_move_is_a_bad_answer() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for stream in listener.incoming().take(2) {
                let mut stream = stream.unwrap();
                let mut buf = [0u8; 4096];
                let _ = std::io::Read::read(&mut stream, &mut buf);
                let body = format!(r#"{{"items":[],"next":"{}"}}"#, "ab".repeat(32));
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        let client = NodeClient::new(&format!("http://{addr}"));
        match client.leases() {
            Err(ClientError::BadAnswer { reason, .. }) => {
                assert!(reason.contains("does not move forward"), "{reason}")
            }
            other => panic!("expected a bad answer, got {other:?}"),
        }
    }
}
