//! `leasemesh deploy`: an Akash SDL becomes signed orders and a manifest; the orders go to a
//! node; bids are shown as they arrive; once the epoch's batch awards an order, the manifest is
//! sealed to the winner's X25519 key and delivered to its API; the client waits for the
//! provider's signed `Running` event and returns the endpoints.
//!
//! Blocking, one thread for the node's event stream; polling backs the stream up, so a lost
//! event only costs latency.

use std::collections::BTreeMap;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use leasemesh_protocol::sdl::{self, OrderParams};
use leasemesh_protocol::seal;
use leasemesh_protocol::{
    Bid, CloseReason, Coin, Id, Keypair, LeaseEvent, LeaseEventKind, Manifest, Order, PublicKey,
    Signed,
};
use serde::Serialize;

use crate::error::{ClientError, Result};
use crate::http::{LeaseRecord, LeaseState, NodeClient, NodeEvent, StreamEvent};

/// How often state is polled besides the event stream.
const POLL_INTERVAL: Duration = Duration::from_millis(100);
/// Bound of the event channel from the stream thread.
const EVENT_QUEUE: usize = 1024;

/// What the SDL does not say, and how long to wait.
#[derive(Debug, Clone)]
pub struct DeployOptions {
    pub bid_window_ms: u64,
    pub lease_term_ms: u64,
    pub grace_period_ms: u64,
    /// Where the tenant pays from; [`crate::keys::default_address`] when `None`.
    pub tenant_address: Option<String>,
    pub block_time_ms: u64,
    /// Longest wait for the award after the auction closed.
    pub award_timeout: Duration,
    /// Longest wait for Running after the award.
    pub running_timeout: Duration,
}

impl Default for DeployOptions {
    fn default() -> Self {
        DeployOptions {
            bid_window_ms: 3_000,
            lease_term_ms: 24 * 3600 * 1000,
            grace_period_ms: 60_000,
            tenant_address: None,
            block_time_ms: sdl::DEFAULT_BLOCK_TIME_MS,
            award_timeout: Duration::from_secs(60),
            running_timeout: Duration::from_secs(120),
        }
    }
}

/// What happens during a deployment, for whoever shows progress.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Progress {
    OrderPosted { order_id: Id, closes_at_ms: u64, max_price: Coin },
    Bid { order_id: Id, bid_id: Id, provider: PublicKey, price: Coin, after_ms: u64 },
    Awarded { order_id: Id, lease_id: Id, provider: PublicKey, price: Option<Coin>, after_ms: u64 },
    ManifestSent { lease_id: Id, provider_api: String },
    LeaseEvent { lease_id: Id, state: LeaseState },
    Running { lease_id: Id, endpoints: Vec<String>, after_ms: u64 },
}

/// Unix milliseconds of each step of one order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Timings {
    pub order_posted_ms: u64,
    pub first_bid_ms: Option<u64>,
    pub award_ms: u64,
    pub running_ms: u64,
}

/// One order of a deployment, awarded and running.
#[derive(Debug, Clone, Serialize)]
pub struct DeployedLease {
    pub order_id: Id,
    pub lease_id: Id,
    pub provider: PublicKey,
    pub provider_api: String,
    pub price_per_hour: Option<Coin>,
    pub endpoints: Vec<String>,
    /// Every bid seen for the order, `(provider, price)`, cheapest first.
    pub bids: Vec<(PublicKey, Coin)>,
    pub timings: Timings,
}

/// Milliseconds since the Unix epoch by this machine's clock.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Parses and converts an SDL and signs its orders. Pure apart from the clock passed in.
pub fn prepare(
    sdl_text: &str,
    key: &Keypair,
    opts: &DeployOptions,
    now: u64,
) -> Result<(Vec<Signed<Order>>, Manifest)> {
    let parsed = sdl::parse(sdl_text)
        .map_err(|e| ClientError::Sdl { path: String::new(), reason: e.to_string() })?;
    let address =
        opts.tenant_address.clone().unwrap_or_else(|| crate::keys::default_address(&key.public()));
    let mut params = OrderParams::new(key.public(), address);
    params.nonce_base = now;
    params.created_at_ms = now;
    params.bid_window_ms = opts.bid_window_ms;
    params.lease_term_ms = opts.lease_term_ms;
    params.grace_period_ms = opts.grace_period_ms;
    params.block_time_ms = opts.block_time_ms;
    let d = sdl::to_orders(&parsed, &params)
        .map_err(|e| ClientError::Sdl { path: String::new(), reason: e.to_string() })?;
    let orders: Vec<Signed<Order>> = d.orders.into_iter().map(|o| Signed::sign(o, key)).collect();
    for o in &orders {
        o.check()
            .map_err(|e| ClientError::Invalid(format!("the SDL gives an invalid order: {e}")))?;
    }
    Ok((orders, d.manifest))
}

#[derive(Debug)]
struct Tracked {
    order: Signed<Order>,
    posted_ms: u64,
    bids: BTreeMap<Id, Signed<Bid>>,
    first_bid_ms: Option<u64>,
    lease: Option<LeaseRecord>,
    award_ms: u64,
    provider_api: String,
    manifest_sent: bool,
    reported_states: Vec<LeaseState>,
    running: Option<(Vec<String>, u64)>,
}

/// Starts a thread that forwards the node's events; `None` if the stream cannot be opened
/// (polling alone then drives the deployment).
pub fn spawn_event_thread(client: &NodeClient) -> Option<mpsc::Receiver<(NodeEvent, u64)>> {
    let mut stream = client.events().ok()?;
    let (tx, rx) = mpsc::sync_channel(EVENT_QUEUE);
    std::thread::spawn(move || {
        while let Some(item) = stream.next_event() {
            // Lagging and unreadable events are skipped: polling catches up.
            let Ok(StreamEvent::Node(ev)) = item else { continue };
            // A full queue drops the event: polling catches up. A closed one ends the thread.
            if let Err(mpsc::TrySendError::Disconnected(_)) = tx.try_send((ev, now_ms())) {
                break;
            }
        }
    });
    Some(rx)
}

/// Deploys an SDL: posts the orders, follows bids and awards, sends the sealed manifest to each
/// winner and waits for Running. Returns one entry per order.
pub fn deploy(
    client: &NodeClient,
    key: &Keypair,
    sdl_text: &str,
    opts: &DeployOptions,
    progress: &mut dyn FnMut(&Progress),
) -> Result<Vec<DeployedLease>> {
    let (orders, manifest) = prepare(sdl_text, key, opts, now_ms())?;
    deploy_prepared(client, orders, &manifest, opts, progress)
}

/// [`deploy`] for orders already signed.
pub fn deploy_prepared(
    client: &NodeClient,
    orders: Vec<Signed<Order>>,
    manifest: &Manifest,
    opts: &DeployOptions,
    progress: &mut dyn FnMut(&Progress),
) -> Result<Vec<DeployedLease>> {
    // Subscribe before posting, so no bid can slip past.
    let events = spawn_event_thread(client);
    let mut tracked: BTreeMap<Id, Tracked> = BTreeMap::new();
    for o in orders {
        let posted_ms = now_ms();
        let sub = client.submit_order(&o)?;
        progress(&Progress::OrderPosted {
            order_id: sub.id,
            closes_at_ms: o.body.auction_closes_at_ms(),
            max_price: o.body.max_price_per_hour.clone(),
        });
        tracked.insert(
            sub.id,
            Tracked {
                order: o,
                posted_ms,
                bids: BTreeMap::new(),
                first_bid_ms: None,
                lease: None,
                award_ms: 0,
                provider_api: String::new(),
                manifest_sent: false,
                reported_states: Vec::new(),
                running: None,
            },
        );
    }
    let closes_at =
        tracked.values().map(|t| t.order.body.auction_closes_at_ms()).max().unwrap_or(0);
    let award_deadline = Instant::now()
        + Duration::from_millis(closes_at.saturating_sub(now_ms()))
        + opts.award_timeout;
    let mut running_deadline: Option<Instant> = None;
    let mut last_poll = Instant::now() - POLL_INTERVAL;

    loop {
        if tracked.values().all(|t| t.running.is_some()) {
            break;
        }
        let now = Instant::now();
        if tracked.values().any(|t| t.lease.is_none()) && now > award_deadline {
            let waited = opts.award_timeout.as_millis() as u64;
            return Err(ClientError::Timeout {
                what: "the award (no match batch awarded the order)".into(),
                waited_ms: waited,
            });
        }
        if let Some(d) = running_deadline {
            if now > d {
                return Err(ClientError::Timeout {
                    what: "Running from the provider".into(),
                    waited_ms: opts.running_timeout.as_millis() as u64,
                });
            }
        }
        // Wait for an event or the next poll.
        let mut hint: Option<(NodeEvent, u64)> = None;
        if let Some(rx) = &events {
            let wait = POLL_INTERVAL.saturating_sub(last_poll.elapsed());
            match rx.recv_timeout(wait) {
                Ok(ev) => hint = Some(ev),
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => std::thread::sleep(wait),
            }
        } else {
            std::thread::sleep(POLL_INTERVAL.saturating_sub(last_poll.elapsed()));
        }
        // An event names what changed: note its time now, fetch the details below.
        if let Some((ev, at)) = &hint {
            match ev {
                NodeEvent::Bid { order_id, .. } => {
                    if let Some(t) = tracked.get_mut(order_id) {
                        t.first_bid_ms.get_or_insert(*at);
                    }
                }
                NodeEvent::Award { order_id, .. } => {
                    if let Some(t) = tracked.get_mut(order_id) {
                        if t.lease.is_none() && t.award_ms == 0 {
                            t.award_ms = *at;
                        }
                    }
                }
                _ => {}
            }
        }
        let poll_due = last_poll.elapsed() >= POLL_INTERVAL || hint.is_some();
        if !poll_due {
            continue;
        }
        last_poll = Instant::now();
        let ids: Vec<Id> = tracked.keys().copied().collect();
        for order_id in ids {
            let Some(t) = tracked.get_mut(&order_id) else { continue };
            step(client, manifest, order_id, t, progress)?;
            if t.lease.is_some() && running_deadline.is_none() {
                running_deadline = Some(Instant::now() + opts.running_timeout);
            }
        }
    }

    let mut out = Vec::new();
    for (order_id, t) in tracked {
        let (Some(lease), Some((endpoints, running_ms))) = (t.lease, t.running) else { continue };
        let mut bids: Vec<(PublicKey, Coin)> =
            t.bids.values().map(|b| (b.body.provider, b.body.price_per_hour.clone())).collect();
        bids.sort_by(|a, b| a.1.amount.cmp(&b.1.amount).then(a.0.cmp(&b.0)));
        out.push(DeployedLease {
            order_id,
            lease_id: lease.lease_id,
            provider: lease.provider,
            provider_api: t.provider_api,
            price_per_hour: Some(lease.price_per_hour),
            endpoints,
            bids,
            timings: Timings {
                order_posted_ms: t.posted_ms,
                first_bid_ms: t.first_bid_ms,
                award_ms: t.award_ms,
                running_ms,
            },
        });
    }
    Ok(out)
}

/// One poll of one order: new bids, the award, the manifest, the provider's events.
fn step(
    client: &NodeClient,
    manifest: &Manifest,
    order_id: Id,
    t: &mut Tracked,
    progress: &mut dyn FnMut(&Progress),
) -> Result<()> {
    if t.lease.is_none() {
        for b in client.bids(&order_id)? {
            let id = b.id();
            if t.bids.contains_key(&id) {
                continue;
            }
            let seen = now_ms();
            let first = *t.first_bid_ms.get_or_insert(seen);
            progress(&Progress::Bid {
                order_id,
                bid_id: id,
                provider: b.body.provider,
                price: b.body.price_per_hour.clone(),
                after_ms: if t.bids.is_empty() { first } else { seen }.saturating_sub(t.posted_ms),
            });
            t.bids.insert(id, b);
        }
        if let Some(lease) = client.leases()?.into_iter().find(|l| l.order_id == order_id) {
            if t.award_ms == 0 {
                t.award_ms = now_ms();
            }
            progress(&Progress::Awarded {
                order_id,
                lease_id: lease.lease_id,
                provider: lease.provider,
                price: Some(lease.price_per_hour.clone()),
                after_ms: t.award_ms.saturating_sub(t.posted_ms),
            });
            t.lease = Some(lease);
        }
    }
    let Some(lease) = t.lease.clone() else { return Ok(()) };
    if !t.manifest_sent {
        let info = client.provider(&lease.provider)?.ok_or_else(|| {
            ClientError::Invalid(format!("the node does not know provider {}", lease.provider))
        })?;
        let sealed = seal::seal(manifest, &info.body.encryption_key)?;
        match client.send_manifest(&info.body.api_endpoint, &lease.lease_id, &sealed) {
            Ok(_) => {
                t.manifest_sent = true;
                t.provider_api = info.body.api_endpoint.clone();
                progress(&Progress::ManifestSent {
                    lease_id: lease.lease_id,
                    provider_api: info.body.api_endpoint,
                });
            }
            // The provider may not have accepted the batch yet: try again at the next poll.
            Err(ClientError::Api { status: 404 | 409 | 425 | 503, .. }) => return Ok(()),
            Err(e) => return Err(e),
        }
    }
    let detail = client.lease(&lease.lease_id)?;
    for ev in &detail.events {
        // Only the lease's provider speaks for the containers.
        if ev.signer != lease.provider {
            continue;
        }
        let state = LeaseState::after(&ev.body.kind);
        if !t.reported_states.contains(&state) {
            t.reported_states.push(state);
            progress(&Progress::LeaseEvent { lease_id: lease.lease_id, state });
        }
        match &ev.body.kind {
            LeaseEventKind::Running { endpoints } if t.running.is_none() => {
                let at = now_ms();
                progress(&Progress::Running {
                    lease_id: lease.lease_id,
                    endpoints: endpoints.clone(),
                    after_ms: at.saturating_sub(t.award_ms),
                });
                t.running = Some((endpoints.clone(), at));
            }
            LeaseEventKind::Failed { reason } => {
                return Err(ClientError::LeaseFailed {
                    lease: lease.lease_id.to_hex(),
                    reason: reason.clone(),
                })
            }
            _ => {}
        }
    }
    Ok(())
}

/// Signs the tenant's `Closed` event for a lease.
pub fn close_event(key: &Keypair, lease_id: Id, order_id: Id) -> Signed<LeaseEvent> {
    Signed::sign(
        LeaseEvent {
            version: leasemesh_protocol::v(),
            lease_id,
            order_id,
            at_ms: now_ms(),
            kind: LeaseEventKind::Closed { reason: CloseReason::TenantClosed },
        },
        key,
    )
}

/// Closes a lease: looks it up, signs `Closed` as its tenant and submits it.
pub fn close(client: &NodeClient, key: &Keypair, lease_id: &Id) -> Result<Id> {
    let detail = client.lease(lease_id)?;
    if let Some(t) = detail.lease.tenant {
        if t != key.public() {
            return Err(ClientError::Invalid(format!(
                "lease {lease_id} belongs to tenant {t}, not to this key"
            )));
        }
    }
    let ev = close_event(key, *lease_id, detail.lease.order_id);
    Ok(client.submit_lease_event(&ev)?.id)
}
