//! The settler's routes, merged into the node's API:
//!
//! - `GET /v1/batches/{epoch}`: the match batch accepted here for an epoch: `{epoch, batch_id,
//!   outcome_digest, settler, awards, signed_hex}` (every node of a mesh shows the same).
//! - `GET /v1/settler/status`: the genesis, the current epoch, its leader, counters.
//! - `GET /v1/leases/{id}/proof` (settlement settler): `{lease_id, proofs: [{batch_sequence,
//!   batch_id, signed_batch_hex, lease_proof, anchor}], shortfall}`; 404 until a batch with the
//!   lease is anchored. `shortfall` (`{owed, paid, unpaid, ...}` or null) is what the tenant could
//!   not pay when its funds stopped.
//! - `GET /v1/ledger/balances/{address}` (settlement settler): `{address, balances: [coin]}`.
//! - `GET /v1/ledger/entries/{hash}` (settlement settler, embedded ledger): the anchored entry
//!   an anchor's tx hash names, `{hash, height, prev_hash, bytes_hex}`.
//! - `POST /v1/ledger/grants` (settlement settler): `{"signed_hex": hex of Signed<SpendGrant>}`
//!   → 201 `{tenant_address, denom, limit}`.
//! - `GET /v1/ledger/grants/{tenant}/{denom}`: the grant left, `{limit: "..." | null}`.
//! - `POST /v1/ledger/bindings` (settlement settler, chain backends): `{address, pubkey_hex,
//!   signature_b64, tenant_key_hex}`, an ADR-036 signature by the address's chain key binding it
//!   to the tenant's ed25519 key → 201 `{address, tenant_key_hex, pubkey_hex, signature_b64}`;
//!   400 malformed, 422 does not verify, 409 already bound to another key, 400
//!   `not_a_chain_backend` on the embedded ledger. See [`super::bindings`].
//! - `GET /v1/ledger/bindings/{address}`: the stored binding, 404 when there is none.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use leasemesh_protocol::{Hash, Signed};
use leasemesh_settlement::control::BindError;
use serde::Deserialize;
use serde_json::json;

use super::settle::{settler_address, SpendGrant};
use super::Shared;
use crate::now_ms;
use leasemesh_matcher::epoch;

fn error(status: StatusCode, code: &str, detail: impl std::fmt::Display) -> Response {
    (status, Json(json!({ "error": code, "detail": detail.to_string() }))).into_response()
}

/// The routes; state is the role's shared part (the node's store comes through `Store`).
pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/v1/batches/{epoch}", get(batch_for_epoch))
        .route("/v1/settler/status", get(status))
        .route("/v1/leases/{id}/proof", get(lease_proof))
        .route("/v1/ledger/balances/{address}", get(balances))
        .route("/v1/ledger/entries/{hash}", get(ledger_entry))
        .route("/v1/ledger/grants", post(post_grant))
        .route("/v1/ledger/grants/{tenant}/{denom}", get(get_grant))
        .route("/v1/ledger/bindings", post(post_binding))
        .route("/v1/ledger/bindings/{address}", get(get_binding))
        .with_state(shared)
}

async fn batch_for_epoch(State(s): State<Arc<Shared>>, Path(e): Path<u64>) -> Response {
    let id = match s.batch_id_for_epoch(e) {
        Ok(Some(id)) => id,
        Ok(None) => {
            return error(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("no batch accepted for epoch {e} here"),
            )
        }
        Err(err) => return error(StatusCode::INTERNAL_SERVER_ERROR, "internal", err),
    };
    let store = s.store.clone();
    match tokio::task::spawn_blocking(move || store.batch(&id)).await {
        Ok(Ok(Some(b))) => Json(json!({
            "epoch": e,
            "batch_id": b.id(),
            "outcome_digest": b.body.outcome_digest,
            "settler": b.signer,
            "prev_batch": b.body.prev_batch,
            "order_ids": b.body.order_ids,
            "bid_ids": b.body.bid_ids,
            "provider_info_ids": b.body.provider_info_ids,
            "awards": b.body.awards.iter().map(|a| json!({
                "lease_id": a.lease_id(),
                "order_id": a.order_id,
                "bid_id": a.bid_id,
                "provider": a.provider,
                "price_per_hour": a.price_per_hour,
                "assignments": a.assignments,
            })).collect::<Vec<_>>(),
            "signed_hex": hex::encode(b.encode()),
        }))
        .into_response(),
        Ok(Ok(None)) => {
            error(StatusCode::NOT_FOUND, "not_found", "the batch is indexed but not stored yet")
        }
        Ok(Err(err)) => error(StatusCode::INTERNAL_SERVER_ERROR, "internal", err),
        Err(err) => error(StatusCode::INTERNAL_SERVER_ERROR, "internal", err),
    }
}

async fn status(State(s): State<Arc<Shared>>) -> Response {
    let now = now_ms();
    let last_batch = match s.last_batch() {
        Ok(id) => id,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e),
    };
    let e = s.clock.epoch_of(now);
    let rejected: u64 = {
        // Family has no sum; the labels we use are few.
        [
            "not_a_settler",
            "too_early",
            "missing_inputs",
            "order_epoch",
            "bid_out_of_auction",
            "snapshot_after_close",
            "wrong_id",
            "inputs_mismatch",
            "awards_mismatch",
            "digest_mismatch",
            "inputs_unreadable",
            "epoch_taken",
        ]
        .iter()
        .map(|r| {
            s.metrics
                .batches_rejected
                .get_or_create(&super::ReasonLabels { reason: (*r).into() })
                .get()
        })
        .sum()
    };
    // The settlement settler knows its backend address (a chain account on Cosmos).
    let settlement_address = match &s.settlement {
        Some(m) => Some(m.address()),
        None => s.genesis.settlement_settler().map(settler_address),
    };
    Json(json!({
        "network": s.genesis.network,
        "genesis_digest": s.genesis.digest(),
        "settlers": s.genesis.settlers,
        "epoch_ms": s.clock.epoch_ms,
        "settle_delay_ms": s.clock.settle_delay_ms,
        "leader_timeout_ms": s.clock.leader_timeout_ms,
        "now_ms": now,
        "epoch": e,
        "leader": epoch::settler_at(&s.genesis.settlers, e, 0),
        "last_batch": last_batch,
        "batches_published": s.metrics.batches_published.get(),
        "batches_accepted": s.metrics.batches_accepted.get(),
        "batches_rejected": rejected,
        "settles": s.settlement.is_some(),
        "settlement_address": settlement_address,
        "settlement_backend": s.genesis.settlement.backend,
        // The chain parameters of the Cosmos backend (rpc_url, chain_id, account_prefix,
        // fee_denom, gas_price), for clients that grant and bind on the chain.
        "settlement_chain": s.genesis.settlement.cosmos,
    }))
    .into_response()
}

fn not_settler() -> Response {
    error(
        StatusCode::NOT_FOUND,
        "not_the_settlement_settler",
        "this node does not hold the ledger; ask the first settler of the genesis",
    )
}

async fn lease_proof(State(s): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    let id = match Hash::from_hex(&id) {
        Ok(id) => id,
        Err(e) => return error(StatusCode::BAD_REQUEST, "bad_id", e),
    };
    let Some(settlement) = &s.settlement else { return not_settler() };
    let (proofs, shortfall) = (settlement.proofs(&id), settlement.shortfall(&id));
    match (proofs, shortfall) {
        (Ok(p), _) if p.is_empty() => error(
            StatusCode::NOT_FOUND,
            "not_anchored",
            "no anchored settlement batch holds this lease yet",
        ),
        // `shortfall`: what the tenant could not pay when its funds stopped (null if paid in full).
        (Ok(p), Ok(short)) => {
            Json(json!({ "lease_id": id, "proofs": p, "shortfall": short })).into_response()
        }
        (Err(e), _) | (_, Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e),
    }
}

async fn balances(State(s): State<Arc<Shared>>, Path(address): Path<String>) -> Response {
    let Some(settlement) = &s.settlement else { return not_settler() };
    let b = settlement.balances(&address).await;
    match b {
        Ok(b) => Json(json!({ "address": address, "balances": b })).into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e),
    }
}

/// `GET /v1/ledger/entries/{hash}`: the embedded ledger's anchored entry for an anchor's tx
/// hash, as the exact bytes that were applied (`bytes_hex`), its height and the hash before it.
async fn ledger_entry(State(s): State<Arc<Shared>>, Path(hash): Path<String>) -> Response {
    let Some(settlement) = &s.settlement else { return not_settler() };
    let hash = hash.to_ascii_lowercase();
    if hash.len() != 64 || !hash.chars().all(|c| c.is_ascii_hexdigit()) {
        return error(StatusCode::BAD_REQUEST, "bad_hash", "an entry hash is 64 hex characters");
    }
    let entry = settlement.ledger_entry(&hash);
    match entry {
        Ok(Some(e)) => Json(json!({
            "hash": hash,
            "height": e.height,
            "prev_hash": e.prev_hash,
            "bytes_hex": hex::encode(&e.bytes),
        }))
        .into_response(),
        Ok(None) => error(StatusCode::NOT_FOUND, "not_found", "no ledger entry with that hash"),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e),
    }
}

/// Body of `POST /v1/ledger/grants`.
#[derive(Debug, Deserialize)]
pub struct GrantBody {
    pub signed_hex: String,
}

async fn post_grant(State(s): State<Arc<Shared>>, Json(body): Json<GrantBody>) -> Response {
    let Some(settlement) = &s.settlement else { return not_settler() };
    let bytes = match hex::decode(body.signed_hex.trim()) {
        Ok(b) => b,
        Err(e) => return error(StatusCode::BAD_REQUEST, "bad_hex", e),
    };
    let grant = match Signed::<SpendGrant>::decode_verified(&bytes) {
        Ok(g) => g,
        Err(e) => return error(StatusCode::UNPROCESSABLE_ENTITY, "invalid", e),
    };
    let applied = settlement.apply_grant(&grant);
    match applied {
        Ok(()) => (
            StatusCode::CREATED,
            Json(json!({
                "tenant_address": grant.body.tenant_address,
                "settler_address": grant.body.settler_address,
                "denom": grant.body.denom,
                "limit": grant.body.limit.to_string(),
            })),
        )
            .into_response(),
        Err(e) => error(StatusCode::FORBIDDEN, "grant_refused", e),
    }
}

async fn get_grant(
    State(s): State<Arc<Shared>>,
    Path((tenant, denom)): Path<(String, String)>,
) -> Response {
    let Some(settlement) = &s.settlement else { return not_settler() };
    let g = settlement.grant_left(&tenant, &denom);
    match g {
        Ok(l) => Json(
            json!({ "tenant_address": tenant, "denom": denom, "limit": l.map(|x| x.to_string()) }),
        )
        .into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e),
    }
}

fn binding_refused(e: &BindError) -> Response {
    let (status, code) = match e {
        BindError::NotAChain => (StatusCode::BAD_REQUEST, "not_a_chain_backend"),
        #[cfg(feature = "cosmos")]
        BindError::Invalid(b) => {
            use leasemesh_protocol::binding::BindingError as B;
            match b {
                B::AddressMismatch { .. } | B::BadSignature | B::HighS => {
                    (StatusCode::UNPROCESSABLE_ENTITY, "binding_does_not_verify")
                }
                _ => (StatusCode::BAD_REQUEST, "bad_binding"),
            }
        }
        BindError::WrongPrefix { .. } => (StatusCode::BAD_REQUEST, "wrong_chain_prefix"),
        BindError::AlreadyBound { .. } => (StatusCode::CONFLICT, "already_bound"),
        _ => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
    };
    error(status, code, e)
}

/// `POST /v1/ledger/bindings`.
async fn post_binding(State(s): State<Arc<Shared>>, body: axum::body::Bytes) -> Response {
    let Some(settlement) = &s.settlement else { return not_settler() };
    let bindings = settlement.bindings();
    if !bindings.takes_bindings() {
        return binding_refused(&BindError::NotAChain);
    }
    #[cfg(feature = "cosmos")]
    {
        let req: leasemesh_protocol::binding::BindingRequest = match serde_json::from_slice(&body) {
            Ok(r) => r,
            Err(e) => return error(StatusCode::BAD_REQUEST, "bad_json", e),
        };
        match bindings.bind(&req) {
            Ok(b) => (StatusCode::CREATED, Json(json!(b))).into_response(),
            Err(e) => binding_refused(&e),
        }
    }
    #[cfg(not(feature = "cosmos"))]
    {
        let _ = body;
        binding_refused(&BindError::NotAChain)
    }
}

/// `GET /v1/ledger/bindings/{address}`.
async fn get_binding(State(s): State<Arc<Shared>>, Path(address): Path<String>) -> Response {
    let Some(settlement) = &s.settlement else { return not_settler() };
    match settlement.bindings().get(&address) {
        Ok(Some(b)) => Json(json!(b)).into_response(),
        Ok(None) => error(
            StatusCode::NOT_FOUND,
            "not_bound",
            format!("no tenant key is bound to {address}"),
        ),
        Err(e) => binding_refused(&e),
    }
}
