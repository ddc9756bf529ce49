//! The HTTP API (axum): JSON for the light client and operators, server-sent events for live
//! updates, Prometheus text on `/metrics`. Errors are `{"error": <code>, "detail": <text>}` with
//! a fitting status.
//!
//! Submissions (`POST /v1/orders`, `/v1/bids`, `/v1/providers`, `/v1/heartbeats`, `/v1/batches`,
//! `/v1/lease-events`) take the signed object's canonical bytes either raw, with
//! `Content-Type: application/octet-stream`, or as JSON `{"signed_hex": "<hex>"}` (the key
//! `signed_<kind>_hex`, for example `signed_order_hex`, works too). Answers: 201 with
//! `{"id", "published"}`; 400 undecodable; 413 too large; 422 bad signature, invalid or expired;
//! 409 already known.
//!
//! Listings (`GET /v1/orders`, `/v1/leases`, `/v1/providers`) are paged: `?limit=N&after=<hex>`
//! gives at most N items (default [`api::DEFAULT_PAGE_LIMIT`], at most [`api::MAX_PAGE_LIMIT`]) in key
//! order after the cursor, as `{"items": [...], "next": "<hex>"}`; `next` is absent on the last
//! page. The answer types are [`leasemesh_protocol::api`]'s, shared with the light client.

use std::convert::Infallible;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use leasemesh_protocol::api::{
    self, ErrorBody, Health, LeaseDetail, NoExtra, OrderExtra, Page, PageQuery, ProviderExtra,
    RawPublished, SignedView, Submitted,
};
use leasemesh_protocol::types::MAX_MATCH_BATCH_SIZE;
use leasemesh_protocol::{Hash, Id, LeaseEvent, Order, ProviderInfo, PublicKey, Signable, Signed};
use serde::Deserialize;
use serde_json::Value;
use tokio::sync::broadcast::error::RecvError;

use crate::ingest::{Kind, Outcome, Reason};
use crate::net::topics::Topic;
use crate::node::Node;
use crate::now_ms;

/// An API error: status, a stable code, and a sentence for people.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub error: &'static str,
    pub detail: String,
}

impl ApiError {
    pub fn new(status: StatusCode, error: &'static str, detail: impl Into<String>) -> ApiError {
        ApiError { status, error, detail: detail.into() }
    }

    fn internal(e: impl std::fmt::Display) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
    }

    fn not_found(what: &str) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("no such {what}"))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody { error: self.error.to_owned(), detail: self.detail };
        (self.status, Json(body)).into_response()
    }
}

fn outcome_error(o: &Outcome) -> ApiError {
    let status = match o.reason {
        Reason::Duplicate | Reason::Stale => StatusCode::CONFLICT,
        Reason::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        Reason::Malformed => StatusCode::BAD_REQUEST,
        Reason::Store => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::UNPROCESSABLE_ENTITY,
    };
    ApiError::new(status, o.reason.as_str(), o.detail.clone())
}

type ApiResult<T> = Result<T, ApiError>;

/// The node's routes. Roles merge their own routers into this one.
pub fn router(node: Node) -> Router {
    let mut r = Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .route("/v1/status", get(status))
        .route("/v1/orders", post(post_order).get(list_orders))
        .route("/v1/orders/{id}", get(get_order))
        .route("/v1/orders/{id}/bids", get(order_bids))
        .route("/v1/bids", post(post_bid))
        .route("/v1/providers", post(post_provider).get(list_providers))
        .route("/v1/heartbeats", post(post_heartbeat))
        .route("/v1/batches", post(post_batch))
        .route("/v1/leases", get(list_leases))
        .route("/v1/leases/{id}", get(get_lease))
        .route("/v1/lease-events", post(post_lease_event))
        .route("/v1/events", get(events));
    if node.config.debug.unsafe_raw_publish {
        r = r.route("/v1/debug/publish", post(debug_publish));
    }
    r.layer(DefaultBodyLimit::max(2 * MAX_MATCH_BATCH_SIZE + 1024)).with_state(node)
}

async fn health() -> Json<Health> {
    Json(Health { status: "ok".into() })
}

async fn metrics(State(node): State<Node>) -> Response {
    let c = node.store.counts();
    node.metrics.store_orders.set(c.orders as i64);
    node.metrics.store_bids.set(c.bids as i64);
    node.metrics.store_providers.set(c.providers as i64);
    node.metrics.store_leases.set(c.leases as i64);
    (
        [(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")],
        node.metrics.encode(),
    )
        .into_response()
}

async fn status(State(node): State<Node>) -> ApiResult<Json<api::Status>> {
    let net = node.net.status().await.ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "stopping",
            "the network service has stopped",
        )
    })?;
    Ok(Json(api::Status {
        peer_id: net.peer_id,
        node_key: node.key.public(),
        listen_addrs: net.listen_addrs,
        connected_peers: net
            .connected_peers
            .into_iter()
            .map(|p| api::PeerStatus { peer_id: p.peer_id, score: p.score, app_score: p.app_score })
            .collect(),
        mesh: net.mesh.into_iter().collect(),
        banned_peers: net.banned_peers,
        store: node.store.counts(),
        time_ms: now_ms(),
    }))
}

// --- submissions ---

/// The signed bytes of a submission: raw, or hex in JSON.
fn submitted_bytes(kind: Kind, headers: &HeaderMap, body: &Bytes) -> ApiResult<Vec<u8>> {
    let ctype = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if ctype.starts_with("application/octet-stream") {
        return Ok(body.to_vec());
    }
    let v: Value = serde_json::from_slice(body).map_err(|e| {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_json", format!("body is not JSON: {e}"))
    })?;
    let alias = format!("signed_{}_hex", kind.name());
    let short_alias = match kind {
        Kind::ProviderInfo => Some("signed_provider_hex"),
        Kind::MatchBatch => Some("signed_batch_hex"),
        _ => None,
    };
    let hex_str = v
        .get("signed_hex")
        .or_else(|| v.get(&alias))
        .or_else(|| short_alias.and_then(|a| v.get(a)))
        .and_then(Value::as_str)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "missing_field",
                format!("expected {{\"signed_hex\": \"<hex>\"}} (or \"{alias}\")"),
            )
        })?;
    hex::decode(hex_str.trim())
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_hex", format!("signed_hex: {e}")))
}

async fn submit(node: Node, kind: Kind, headers: HeaderMap, body: Bytes) -> ApiResult<Response> {
    let bytes = submitted_bytes(kind, &headers, &body)?;
    match node.submit(kind, bytes).await {
        Ok(s) => Ok((
            StatusCode::CREATED,
            Json(Submitted {
                id: s.id,
                published: s.publish_error.is_none(),
                publish_note: s.publish_error.map(|e| e.to_string()),
            }),
        )
            .into_response()),
        Err(o) => Err(outcome_error(&o)),
    }
}

async fn post_order(State(n): State<Node>, h: HeaderMap, b: Bytes) -> ApiResult<Response> {
    submit(n, Kind::Order, h, b).await
}
async fn post_bid(State(n): State<Node>, h: HeaderMap, b: Bytes) -> ApiResult<Response> {
    submit(n, Kind::Bid, h, b).await
}
async fn post_provider(State(n): State<Node>, h: HeaderMap, b: Bytes) -> ApiResult<Response> {
    submit(n, Kind::ProviderInfo, h, b).await
}
async fn post_heartbeat(State(n): State<Node>, h: HeaderMap, b: Bytes) -> ApiResult<Response> {
    submit(n, Kind::Heartbeat, h, b).await
}
async fn post_batch(State(n): State<Node>, h: HeaderMap, b: Bytes) -> ApiResult<Response> {
    submit(n, Kind::MatchBatch, h, b).await
}
async fn post_lease_event(State(n): State<Node>, h: HeaderMap, b: Bytes) -> ApiResult<Response> {
    submit(n, Kind::LeaseEvent, h, b).await
}

// --- reads ---

fn view<T: Signable, X>(s: &Signed<T>, extra: X) -> SignedView<T, X> {
    SignedView {
        id: s.id(),
        signer: s.signer,
        extra,
        body: s.body.clone(),
        signed_hex: hex::encode(s.encode()),
    }
}

fn parse_id(s: &str) -> ApiResult<Id> {
    Hash::from_hex(s).map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_id", e.to_string()))
}

/// Query of `GET /v1/orders`: the page, and whether closed auctions are listed too.
#[derive(Debug, Deserialize)]
pub struct OrdersQuery {
    /// Include orders whose auction has closed.
    #[serde(default)]
    pub all: bool,
    #[serde(default)]
    pub limit: Option<usize>,
    #[serde(default)]
    pub after: Option<String>,
}

/// The limit and the cursor of a page query, checked.
fn page_args(q: &PageQuery) -> ApiResult<(usize, Option<Hash>)> {
    let limit = q
        .limit()
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_limit", e.to_string()))?;
    let after = q
        .after
        .as_deref()
        .map(|a| {
            Hash::from_hex(a).map_err(|e| {
                ApiError::new(StatusCode::BAD_REQUEST, "bad_cursor", format!("after: {e}"))
            })
        })
        .transpose()?;
    Ok((limit, after))
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> ApiResult<T> {
    tokio::task::spawn_blocking(f).await.map_err(ApiError::internal)
}

type OrderView = SignedView<Order, OrderExtra>;

async fn list_orders(
    State(node): State<Node>,
    Query(q): Query<OrdersQuery>,
) -> ApiResult<Json<Page<OrderView>>> {
    let (limit, after) = page_args(&PageQuery { limit: q.limit, after: q.after })?;
    let now = now_ms();
    let live_at = if q.all { None } else { Some(now) };
    let (orders, next) = blocking(move || node.store.orders_page(after, limit, live_at))
        .await?
        .map_err(ApiError::internal)?;
    let items = orders
        .iter()
        .map(|o| view(o, OrderExtra { live: o.body.auction_closes_at_ms() > now }))
        .collect();
    Ok(Json(Page { items, next: next.map(|n| n.to_hex()) }))
}

async fn get_order(State(node): State<Node>, Path(id): Path<String>) -> ApiResult<Json<OrderView>> {
    let id = parse_id(&id)?;
    let o = blocking(move || node.store.order(&id)).await?.map_err(ApiError::internal)?;
    let o = o.ok_or_else(|| ApiError::not_found("order"))?;
    let live = o.body.auction_closes_at_ms() > now_ms();
    Ok(Json(view(&o, OrderExtra { live })))
}

async fn order_bids(
    State(node): State<Node>,
    Path(id): Path<String>,
) -> ApiResult<Json<Vec<SignedView<leasemesh_protocol::Bid>>>> {
    let id = parse_id(&id)?;
    let store = node.store.clone();
    let (known, bids) = blocking(move || (store.has_order(&id), store.bids_for_order(&id))).await?;
    if !known.map_err(ApiError::internal)? {
        return Err(ApiError::not_found("order"));
    }
    let bids = bids.map_err(ApiError::internal)?;
    Ok(Json(bids.iter().map(|b| view(b, NoExtra {})).collect()))
}

type ProviderView = SignedView<ProviderInfo, ProviderExtra>;

async fn list_providers(
    State(node): State<Node>,
    Query(q): Query<PageQuery>,
) -> ApiResult<Json<Page<ProviderView>>> {
    let (limit, after) = page_args(&q)?;
    let store = node.store.clone();
    let res = blocking(move || {
        let (infos, next) = store.provider_infos_page(after.map(|a| PublicKey(a.0)), limit)?;
        let items = infos
            .into_iter()
            .map(|i| {
                let hb = store.heartbeat(&i.body.provider)?;
                Ok(view(&i, ProviderExtra { heartbeat: hb.map(|h| h.body) }))
            })
            .collect::<Result<Vec<_>, crate::store::StoreError>>()?;
        Ok::<_, crate::store::StoreError>(Page { items, next: next.map(|n| n.to_hex()) })
    })
    .await?
    .map_err(ApiError::internal)?;
    Ok(Json(res))
}

async fn list_leases(
    State(node): State<Node>,
    Query(q): Query<PageQuery>,
) -> ApiResult<Json<Page<crate::store::LeaseRecord>>> {
    let (limit, after) = page_args(&q)?;
    let (items, next) = blocking(move || node.store.leases_page(after, limit))
        .await?
        .map_err(ApiError::internal)?;
    Ok(Json(Page { items, next: next.map(|n| n.to_hex()) }))
}

async fn get_lease(
    State(node): State<Node>,
    Path(id): Path<String>,
) -> ApiResult<Json<LeaseDetail>> {
    let id = parse_id(&id)?;
    let store = node.store.clone();
    let (lease, events) = blocking(move || (store.lease(&id), store.lease_events(&id))).await?;
    let lease = lease.map_err(ApiError::internal)?.ok_or_else(|| ApiError::not_found("lease"))?;
    let events: Vec<SignedView<LeaseEvent>> =
        events.map_err(ApiError::internal)?.iter().map(|e| view(e, NoExtra {})).collect();
    Ok(Json(LeaseDetail { lease, events }))
}

async fn events(
    State(node): State<Node>,
) -> Sse<impl futures::Stream<Item = Result<Event, Infallible>>> {
    let rx = node.events.subscribe();
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        let ev = match rx.recv().await {
            Ok(ev) => Event::default()
                .event(ev.name())
                .json_data(&ev)
                .unwrap_or_else(|_| Event::default().event("error")),
            Err(RecvError::Lagged(n)) => {
                Event::default().event(api::LAGGED_EVENT).data(n.to_string())
            }
            Err(RecvError::Closed) => return None,
        };
        Some((Ok(ev), rx))
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

// --- debug ---

/// Body of `POST /v1/debug/publish`.
#[derive(Debug, Deserialize)]
pub struct RawPublish {
    /// Topic kind: orders, bids, providers, heartbeats, batches, leases.
    pub topic: String,
    pub payloads_hex: Vec<String>,
}

/// Gossips payloads without any check (tests play misbehaving peers with it). Only routed when
/// `debug.unsafe_raw_publish` is on.
async fn debug_publish(
    State(node): State<Node>,
    Json(req): Json<RawPublish>,
) -> ApiResult<Json<RawPublished>> {
    let topic = Topic::from_kind(&req.topic)
        .ok_or_else(|| ApiError::new(StatusCode::BAD_REQUEST, "bad_topic", req.topic.clone()))?;
    let mut published = 0usize;
    let mut errors = Vec::new();
    for h in &req.payloads_hex {
        let data = hex::decode(h)
            .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_hex", e.to_string()))?;
        match node.net.publish(topic, data).await {
            Ok(()) => published += 1,
            Err(e) => errors.push(e.to_string()),
        }
    }
    Ok(Json(RawPublished { published, errors }))
}
