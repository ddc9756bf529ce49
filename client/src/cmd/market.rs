//! `leasemesh orders | bids ORDER | providers | leases | lease status|logs|close ID`.

use std::fmt::Write as _;
use std::process::ExitCode;

use clap::Subcommand;
use leasemesh_client::{deploy, keys};
use leasemesh_protocol::LeaseEventKind;
use serde_json::{json, Value};

use super::{parse_id, CmdResult, Ctx};

#[derive(Debug, Subcommand)]
pub enum LeaseCmd {
    /// The lease, its signed events, and the provider's view of the containers.
    Status { lease: String },
    /// The containers' logs, from the provider.
    Logs {
        lease: String,
        /// Lines from the end.
        #[arg(long, default_value_t = 100)]
        tail: u32,
    },
    /// Closes the lease (a tenant-signed Closed event): the provider stops the containers and
    /// accrual ends.
    Close { lease: String },
}

fn gib(bytes: u64) -> String {
    format!("{:.1}GiB", bytes as f64 / (1u64 << 30) as f64)
}

pub fn orders(ctx: &Ctx, all: bool) -> CmdResult {
    let orders = ctx.client.orders(all)?;
    let v: Vec<Value> = orders
        .iter()
        .map(|o| json!({ "id": o.id(), "tenant": o.signer, "closes_at_ms": o.body.auction_closes_at_ms(), "body": o.body }))
        .collect();
    ctx.emit(&json!(v), || {
        let mut s = format!("{} order(s)\n", orders.len());
        for o in &orders {
            let _ = writeln!(
                s,
                "{}  tenant {}  max {}/h  replicas {}  closes {}",
                o.id(),
                o.signer.to_hex().get(..16).unwrap_or(""),
                o.body.max_price_per_hour,
                o.body.replicas(),
                o.body.auction_closes_at_ms()
            );
        }
        s
    });
    Ok(ExitCode::SUCCESS)
}

pub fn bids(ctx: &Ctx, order: &str) -> CmdResult {
    let id = parse_id("order", order)?;
    let mut bids = ctx.client.bids(&id)?;
    bids.sort_by_key(|b| b.body.price_per_hour.amount);
    let v: Vec<Value> = bids.iter().map(|b| json!({ "id": b.id(), "body": b.body })).collect();
    ctx.emit(&json!(v), || {
        let mut s = format!("{} bid(s) on {id}\n", bids.len());
        for b in &bids {
            let _ = writeln!(
                s,
                "{}  provider {}  {}/h  expires {}",
                b.id(),
                b.body.provider,
                b.body.price_per_hour,
                b.body.expires_at_ms
            );
        }
        s
    });
    Ok(ExitCode::SUCCESS)
}

pub fn providers(ctx: &Ctx) -> CmdResult {
    let infos = ctx.client.providers()?;
    let v: Vec<Value> = infos.iter().map(|p| json!({ "id": p.id(), "body": p.body })).collect();
    ctx.emit(&json!(v), || {
        let mut s = format!("{} provider(s)\n", infos.len());
        for p in &infos {
            let attrs: Vec<String> =
                p.body.attributes.iter().map(|a| format!("{}={}", a.key, a.value)).collect();
            let _ =
                writeln!(s, "{}  {}  [{}]", p.body.provider, p.body.api_endpoint, attrs.join(","));
            for h in &p.body.hosts {
                let _ = writeln!(
                    s,
                    "  host {}: free {}m cpu, {} mem, {} disk, {} gpu(s)",
                    h.name,
                    h.free.cpu_millis,
                    gib(h.free.memory_bytes),
                    gib(h.free.ephemeral_storage_bytes),
                    h.free.gpus.len()
                );
            }
        }
        s
    });
    Ok(ExitCode::SUCCESS)
}

pub fn leases(ctx: &Ctx) -> CmdResult {
    let leases = ctx.client.leases()?;
    ctx.emit(&json!(leases), || {
        let mut s = format!("{} lease(s)\n", leases.len());
        for l in &leases {
            let price = l.price_per_hour.to_string();
            let _ = writeln!(
                s,
                "{}  {:<17}  provider {}  {}/h",
                l.lease_id, l.state, l.provider, price
            );
        }
        s
    });
    Ok(ExitCode::SUCCESS)
}

fn provider_api(ctx: &Ctx, lease: &leasemesh_client::http::LeaseRecord) -> anyhow::Result<String> {
    let info = ctx
        .client
        .provider(&lease.provider)?
        .ok_or_else(|| anyhow::anyhow!("the node does not know provider {}", lease.provider))?;
    Ok(info.body.api_endpoint.trim_end_matches('/').to_owned())
}

pub fn lease(ctx: &Ctx, cmd: LeaseCmd) -> CmdResult {
    match cmd {
        LeaseCmd::Status { lease } => {
            let id = parse_id("lease", &lease)?;
            let d = ctx.client.lease(&id)?;
            let runtime = provider_api(ctx, &d.lease)
                .and_then(|api| {
                    Ok(ctx.client.get_json_url(&format!("{api}/v1/leases/{id}/status"))?)
                })
                .map_err(|e| format!("{e:#}"));
            let events: Vec<Value> = d
                .events
                .iter()
                .map(|e| json!({ "id": e.id(), "signer": e.signer, "at_ms": e.body.at_ms, "kind": e.body.kind }))
                .collect();
            let runtime_v = match &runtime {
                Ok(v) => v.clone(),
                Err(e) => json!({ "unavailable": e }),
            };
            ctx.emit(&json!({ "lease": d.lease, "events": events, "runtime": runtime_v }), || {
                let mut s = format!(
                    "lease    {}\norder    {}\nprovider {}\nstate    {}\n",
                    d.lease.lease_id, d.lease.order_id, d.lease.provider, d.lease.state
                );
                for e in &d.events {
                    let what = match &e.body.kind {
                        LeaseEventKind::Running { endpoints } => {
                            format!("running {}", endpoints.join(" "))
                        }
                        LeaseEventKind::Failed { reason } => format!("failed: {reason}"),
                        LeaseEventKind::Closed { reason } => format!("closed ({reason:?})"),
                        LeaseEventKind::ManifestAccepted => "manifest accepted".into(),
                    };
                    let _ = writeln!(s, "  {}  {}", e.body.at_ms, what);
                }
                match &runtime {
                    Ok(v) => {
                        let _ = writeln!(s, "runtime  {v}");
                    }
                    Err(e) => {
                        let _ = writeln!(s, "runtime  unavailable: {e}");
                    }
                }
                s
            });
            Ok(ExitCode::SUCCESS)
        }
        LeaseCmd::Logs { lease, tail } => {
            let id = parse_id("lease", &lease)?;
            let d = ctx.client.lease(&id)?;
            let api = provider_api(ctx, &d.lease)?;
            // The provider streams one JSON object per line; without follow the stream ends.
            let text =
                ctx.client.get_text_url(&format!("{api}/v1/leases/{id}/logs?tail={tail}"))?;
            let lines: Vec<Value> = text
                .lines()
                .filter(|l| !l.trim().is_empty())
                .filter_map(|l| serde_json::from_str(l).ok())
                .collect();
            ctx.emit(&json!({ "lease_id": id, "lines": lines }), || {
                let mut s = String::new();
                for l in &lines {
                    let svc = l.get("service").and_then(Value::as_str).unwrap_or("");
                    let text = l.get("line").and_then(Value::as_str).unwrap_or("");
                    let _ = writeln!(s, "[{svc}] {text}");
                }
                s
            });
            Ok(ExitCode::SUCCESS)
        }
        LeaseCmd::Close { lease } => {
            let id = parse_id("lease", &lease)?;
            let key = keys::load(&ctx.home)?;
            let event_id = deploy::close(&ctx.client, &key, &id)?;
            ctx.emit(&json!({ "lease_id": id, "close_event": event_id }), || {
                format!("closed lease {id} (event {event_id})")
            });
            Ok(ExitCode::SUCCESS)
        }
    }
}
