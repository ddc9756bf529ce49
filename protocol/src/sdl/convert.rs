//! From a checked [`Sdl`] to unsigned orders (one per placement group) and the manifest.

use super::error::SdlError;
use super::{DeploymentEntry, HttpOptions, PlacementProfile, Sdl, Service, VolumeKind};
use crate::codec::{Signable, PROTOCOL_VERSION};
use crate::crypto::{Hash, PublicKey};
use crate::manifest::{
    self, ExposedPort, Manifest, ManifestGroup, Mount, MountKind, ServiceManifest,
};
use crate::types::{
    Coin, GpuRequest, Order, PersistentVolume, Placement, Resources, ServiceGroup, TeeKind,
};
use crate::validate::ValidationError;

/// Akash's block time: SDL prices are per block, so an hour is 600 blocks.
pub const DEFAULT_BLOCK_TIME_MS: u64 = 6_000;

/// Ephemeral storage asked for a profile whose SDL declares only persistent or ram volumes:
/// every container needs a writable root file system and orders refuse 0 bytes.
pub const IMPLICIT_EPHEMERAL_BYTES: u64 = 128 << 20;

const MS_PER_HOUR: u128 = 3_600_000;

/// What the SDL does not say but an order needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderParams {
    /// The tenant key that will sign the orders.
    pub tenant: PublicKey,
    /// Orders get nonces `nonce_base`, `nonce_base + 1`, ... in placement name order.
    pub nonce_base: u64,
    pub created_at_ms: u64,
    pub bid_window_ms: u64,
    pub lease_term_ms: u64,
    pub grace_period_ms: u64,
    pub tenant_address: String,
    /// Block time for per-block SDL prices; [`DEFAULT_BLOCK_TIME_MS`] (×600 per hour) by default.
    pub block_time_ms: u64,
}

impl OrderParams {
    /// A 10 s auction, a 30-day term, a 60 s grace period and Akash's 6 s blocks.
    pub fn new(tenant: PublicKey, tenant_address: impl Into<String>) -> OrderParams {
        OrderParams {
            tenant,
            nonce_base: 0,
            created_at_ms: 0,
            bid_window_ms: 10_000,
            lease_term_ms: 30 * 24 * 3600 * 1000,
            grace_period_ms: 60_000,
            tenant_address: tenant_address.into(),
            block_time_ms: DEFAULT_BLOCK_TIME_MS,
        }
    }
}

/// What an SDL file becomes: the orders to sign and gossip, and the manifest for the winners.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deployment {
    /// One per placement group, sorted by placement name; `manifest_hash` set, unsigned.
    pub orders: Vec<Order>,
    pub manifest: Manifest,
}

impl Deployment {
    /// Service replicas across all orders.
    pub fn replicas(&self) -> u64 {
        self.orders.iter().map(Order::replicas).sum()
    }

    /// GPUs across all orders and replicas.
    pub fn gpus(&self) -> u64 {
        self.orders.iter().map(Order::gpus).sum()
    }
}

fn resources(sdl: &Sdl, profile: &str, path: &str, line: usize) -> Result<Resources, SdlError> {
    let Some(p) = sdl.profile(profile) else {
        return Err(SdlError::UnknownRef {
            path: path.to_owned(),
            line,
            what: "compute profile",
            name: profile.to_owned(),
            hint: String::new(),
        });
    };
    let overflow = |why| SdlError::Overflow {
        path: format!("profiles.compute.{profile}.resources"),
        line: p.line,
        why,
    };
    let mut memory = p.memory_bytes;
    let mut ephemeral: u64 = 0;
    let mut persistent = Vec::new();
    for v in &p.storage {
        match v.kind {
            VolumeKind::Ram => {
                memory = memory
                    .checked_add(v.bytes)
                    .ok_or_else(|| overflow("memory plus ram volumes"))?
            }
            VolumeKind::Ephemeral => {
                ephemeral =
                    ephemeral.checked_add(v.bytes).ok_or_else(|| overflow("ephemeral storage"))?
            }
            VolumeKind::Persistent => persistent.push(PersistentVolume {
                name: v.name.clone(),
                class: v.class.clone().unwrap_or_else(|| "default".to_owned()),
                bytes: v.bytes,
            }),
        }
    }
    if ephemeral == 0 {
        ephemeral = IMPLICIT_EPHEMERAL_BYTES;
    }
    persistent.sort_by(|a, b| a.name.cmp(&b.name));
    let gpu = p.gpu.as_ref().map(|g| GpuRequest {
        units: g.units,
        vendor: g.vendor.clone(),
        models: g.models.clone(),
    });
    Ok(Resources {
        cpu_millis: p.cpu_millis,
        memory_bytes: memory,
        ephemeral_storage_bytes: ephemeral,
        persistent_storage: persistent,
        gpu,
        tee: None,
    })
}

/// Converts a parsed SDL into one unsigned order per placement group plus the manifest.
///
/// The max price per hour of an order is the sum over its services of
/// `count × amount per block × blocks per hour`, computed exactly and rounded down to a whole
/// unit (never more than the SDL allows). Profiles of one placement must share a denom.
pub fn to_orders(sdl: &Sdl, params: &OrderParams) -> Result<Deployment, SdlError> {
    if params.block_time_ms == 0 {
        return Err(SdlError::Params {
            field: "block_time_ms",
            why: "a block time of 0 ms has no blocks per hour",
        });
    }
    let mut placements: Vec<&str> = sdl.deployment.iter().map(|d| d.placement.as_str()).collect();
    placements.dedup();
    if placements.is_empty() {
        return Err(SdlError::Missing {
            path: "deployment".into(),
            line: 1,
            hint: "deploy at least one service",
        });
    }
    let mut drafts: Vec<(Order, usize)> = Vec::new();
    let mut groups = Vec::new();
    for (i, placement_name) in placements.iter().enumerate() {
        let nonce = params.nonce_base.checked_add(i as u64).ok_or(SdlError::Params {
            field: "nonce_base",
            why: "nonce_base plus the number of placements overflows",
        })?;
        let (order, group, line) = placement_order(sdl, params, placement_name, nonce)?;
        groups.push(group);
        drafts.push((order, line));
    }
    let mut manifest = Manifest { version: PROTOCOL_VERSION, groups };
    manifest.version = manifest.wire_version();
    validate_manifest(sdl, &manifest)?;
    let manifest_hash = manifest.hash();
    let mut orders = Vec::with_capacity(drafts.len());
    for (mut order, line) in drafts {
        order.manifest_hash = manifest_hash;
        order.validate().map_err(|source| SdlError::Invalid {
            path: format!("profiles.placement.{}", order.placement.name),
            line,
            what: "order",
            source: Box::new(source),
        })?;
        orders.push(order);
    }
    Ok(Deployment { orders, manifest })
}

/// One placement: its order (without the manifest hash), its manifest group and the line of
/// its placement profile.
fn placement_order(
    sdl: &Sdl,
    params: &OrderParams,
    placement_name: &str,
    nonce: u64,
) -> Result<(Order, ManifestGroup, usize), SdlError> {
    let Some(placement) = sdl.placement(placement_name) else {
        return Err(SdlError::UnknownRef {
            path: format!("deployment.*.{placement_name}"),
            line: 1,
            what: "placement",
            name: placement_name.to_owned(),
            hint: String::new(),
        });
    };
    let entries: Vec<&DeploymentEntry> =
        sdl.deployment.iter().filter(|d| d.placement == placement_name).collect();
    let max_price_per_hour = price_per_hour(placement, &entries, params.block_time_ms)?;
    let mut service_groups = Vec::new();
    let mut services = Vec::new();
    for d in &entries {
        let dpath = format!("deployment.{}.{}", d.service, d.placement);
        let mut resources = resources(sdl, &d.profile, &format!("{dpath}.profile"), d.line)?;
        let Some(service) = sdl.service(&d.service) else {
            return Err(SdlError::UnknownRef {
                path: dpath,
                line: d.line,
                what: "service",
                name: d.service.clone(),
                hint: String::new(),
            });
        };
        resources.tee = service.tee.as_ref().and_then(|t| TeeKind::parse(&t.kind));
        let gpu_units = resources.gpu.as_ref().map_or(0, |g| g.units);
        services.push(service_manifest(sdl, service, d, gpu_units, resources.tee)?);
        service_groups.push(ServiceGroup { name: d.service.clone(), count: d.count, resources });
    }
    service_groups.sort_by(|a, b| a.name.cmp(&b.name));
    services.sort_by(|a, b| a.name.cmp(&b.name));
    let mut order = Order {
        version: PROTOCOL_VERSION,
        tenant: params.tenant,
        nonce,
        created_at_ms: params.created_at_ms,
        bid_window_ms: params.bid_window_ms,
        lease_term_ms: params.lease_term_ms,
        grace_period_ms: params.grace_period_ms,
        groups: service_groups,
        placement: Placement {
            name: placement_name.to_owned(),
            attributes: placement.attributes.clone(),
            min_uptime_bps: 0,
        },
        max_price_per_hour,
        tenant_address: params.tenant_address.clone(),
        manifest_hash: Hash::ZERO,
    };
    order.version = order.wire_version();
    Ok((order, ManifestGroup { name: placement_name.to_owned(), services }, placement.line))
}

/// Exact sum of count × amount over the placement's services, scaled to the largest number of
/// decimals, then × ms per hour ÷ (block time × 10^scale), rounded down once at the end.
fn price_per_hour(
    placement: &PlacementProfile,
    entries: &[&DeploymentEntry],
    block_time_ms: u64,
) -> Result<Coin, SdlError> {
    let ppath = format!("profiles.placement.{}", placement.name);
    let scale = entries
        .iter()
        .filter_map(|d| placement.pricing.iter().find(|p| p.profile == d.profile))
        .map(|p| p.amount.scale)
        .max()
        .unwrap_or(0);
    let mut denom: Option<&str> = None;
    let mut numerator: u128 = 0;
    for d in entries {
        let pricing_path = format!("{ppath}.pricing.{}", d.profile);
        let Some(price) = placement.pricing.iter().find(|p| p.profile == d.profile) else {
            return Err(SdlError::Missing {
                path: pricing_path,
                line: placement.pricing_line,
                hint: "every profile deployed in a placement needs a price there",
            });
        };
        match denom {
            None => denom = Some(&price.denom),
            Some(first) if first != price.denom => {
                return Err(SdlError::MixedDenoms {
                    path: format!("{pricing_path}.denom"),
                    line: price.line,
                    placement: placement.name.clone(),
                    first: first.to_owned(),
                    second: price.denom.clone(),
                })
            }
            Some(_) => {}
        }
        let overflow = || SdlError::Overflow {
            path: format!("{pricing_path}.amount"),
            line: price.line,
            why: "count × amount × blocks per hour does not fit in 128 bits",
        };
        let scaled = 10u128
            .checked_pow(scale - price.amount.scale)
            .and_then(|f| price.amount.mantissa.checked_mul(f))
            .and_then(|m| m.checked_mul(u128::from(d.count)))
            .ok_or_else(overflow)?;
        numerator = numerator.checked_add(scaled).ok_or_else(overflow)?;
    }
    let price_overflow = || SdlError::Overflow {
        path: format!("{ppath}.pricing"),
        line: placement.pricing_line,
        why: "the price per hour does not fit in 128 bits",
    };
    let divisor = 10u128
        .checked_pow(scale)
        .and_then(|p| p.checked_mul(u128::from(block_time_ms)))
        .ok_or_else(price_overflow)?;
    let per_hour = numerator.checked_mul(MS_PER_HOUR).ok_or_else(price_overflow)? / divisor;
    let denom = denom.unwrap_or_default().to_owned();
    if per_hour == 0 {
        return Err(SdlError::BadValue {
            path: format!("{ppath}.pricing"),
            line: placement.pricing_line,
            value: "0".into(),
            why: format!("the max price is 0 {denom} per hour: no provider can be paid"),
        });
    }
    Ok(Coin::new(denom, per_hour))
}

/// The manifest entry of one service deployed with one profile.
fn service_manifest(
    sdl: &Sdl,
    service: &Service,
    d: &DeploymentEntry,
    gpu_units: u32,
    tee: Option<TeeKind>,
) -> Result<ServiceManifest, SdlError> {
    let profile = sdl.profile(&d.profile);
    let mut mounts = Vec::new();
    for m in &service.mounts {
        let volume = profile.and_then(|p| p.storage.iter().find(|v| v.name == m.volume));
        let kind = match volume.map(|v| (v.kind, v.bytes)) {
            Some((VolumeKind::Persistent, _)) => MountKind::Persistent,
            Some((VolumeKind::Ram, bytes)) => MountKind::Ram { bytes },
            Some((VolumeKind::Ephemeral, _)) => MountKind::Ephemeral,
            None => {
                return Err(SdlError::UnknownRef {
                    path: format!("services.{}.params.storage.{}", service.name, m.volume),
                    line: m.line,
                    what: "volume",
                    name: m.volume.clone(),
                    hint: format!(" in compute profile {}", d.profile),
                })
            }
        };
        mounts.push(Mount {
            volume: m.volume.clone(),
            path: m.path.clone(),
            read_only: m.read_only,
            kind,
        });
    }
    if let Some(c) = &service.credentials {
        return Err(SdlError::Unsupported {
            path: format!("services.{}.credentials", service.name),
            line: c.line,
            why: "private registry credentials cannot be delivered to providers yet; use a public image",
        });
    }
    Ok(ServiceManifest {
        name: service.name.clone(),
        image: service.image.clone(),
        command: service.command.clone(),
        args: service.args.clone(),
        env: service.env.clone(),
        expose: service
            .expose
            .iter()
            .map(|x| ExposedPort {
                port: x.port,
                external_port: x.external_port,
                proto: x.proto,
                global: x.global,
                hosts: x.accept.clone(),
                to_services: x.to_services.clone(),
                ip_endpoint: x.ip.clone(),
                http_options: x.http_options.as_ref().map(http_options),
            })
            .collect(),
        mounts,
        count: d.count,
        gpu_units,
        tee,
    })
}

/// The SDL's HTTP options with Akash's defaults for what it leaves out (0 means the default
/// too, as in Akash); the reader checked Akash's limits, so every value fits in 32 bits.
fn http_options(o: &HttpOptions) -> manifest::HttpOptions {
    let or = |v: Option<u64>, default: u32| match v {
        None | Some(0) => default,
        Some(x) => u32::try_from(x).unwrap_or(u32::MAX),
    };
    manifest::HttpOptions {
        max_body_size: or(o.max_body_size, 1 << 20),
        proxy_buffer_size: or(o.proxy_buffer_size, 0),
        read_timeout_ms: or(o.read_timeout, 60_000),
        send_timeout_ms: or(o.send_timeout, 60_000),
        next_tries: or(o.next_tries, 3),
        next_timeout_ms: or(o.next_timeout, 0),
        next_cases: if o.next_cases.is_empty() {
            vec!["error".to_owned(), "timeout".to_owned()]
        } else {
            o.next_cases.clone()
        },
    }
}

/// The manifest's own checks, pointed at the service the broken field belongs to.
fn validate_manifest(sdl: &Sdl, manifest: &Manifest) -> Result<(), SdlError> {
    manifest.validate().map_err(|source| {
        let field = match &source {
            ValidationError::TooMany { field, .. }
            | ValidationError::TooLong { field, .. }
            | ValidationError::BadValue { field, .. }
            | ValidationError::Empty { field }
            | ValidationError::Zero { field }
            | ValidationError::NotSortedUnique { field, .. } => field.as_str(),
            _ => "",
        };
        let service =
            sdl.services.iter().find(|s| field.contains(&format!(".services.{}.", s.name)));
        SdlError::Invalid {
            path: service.map_or_else(|| "services".to_owned(), |s| format!("services.{}", s.name)),
            line: service.map_or(1, |s| s.line),
            what: "manifest",
            source: Box::new(source),
        }
    })
}
