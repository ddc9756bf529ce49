//! Akash SDL import: read a tenant's `deploy.yaml` (SDL v2.0 / v2.1) as Akash does and turn it
//! into leasemesh [`Order`](crate::Order)s plus the [`Manifest`](crate::Manifest).
//!
//! [`parse`] reads and checks the text (every error names the key path and the line);
//! [`to_orders`] converts: one unsigned order per placement group, one manifest for all of
//! them. SDL prices are per replica per block; with Akash's 6 s blocks an hour has 600 blocks,
//! so `amount: 1000` on a profile with `count: 2` gives a max price of 1,200,000 per hour.
//!
//! Pure functions: no I/O. The supported features and every lenient case are listed in
//! `docs/sdl.md`.

mod convert;
mod error;
mod read;
mod units;
mod yaml;

pub use convert::{
    to_orders, Deployment, OrderParams, DEFAULT_BLOCK_TIME_MS, IMPLICIT_EPHEMERAL_BYTES,
};
pub use error::{SdlError, SdlWarning};
pub use units::{cpu_millis, size_bytes, Decimal, UnitSpelling};
pub use yaml::{MAX_DEPTH, MAX_NODES, MAX_SDL_BYTES};

use crate::manifest::{EnvVar, PortProto};
use crate::types::{Attribute, GpuModelSpec};

/// A parsed and checked SDL file. Maps are sorted by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sdl {
    /// `"2.0"` or `"2.1"` (`'2'` is read as 2.0).
    pub version: String,
    pub services: Vec<Service>,
    pub compute: Vec<ComputeProfile>,
    pub placements: Vec<PlacementProfile>,
    /// One entry per service and placement, sorted by (placement, service).
    pub deployment: Vec<DeploymentEntry>,
    /// Named IP endpoints (`endpoints: {name: {kind: ip}}`).
    pub endpoints: Vec<String>,
    /// The line of each endpoint's name, in the order of `endpoints`.
    pub endpoint_lines: Vec<(String, usize)>,
    /// Accepted on purpose, but worth telling the author.
    pub warnings: Vec<SdlWarning>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    pub name: String,
    pub line: usize,
    pub image: String,
    pub command: Vec<String>,
    pub args: Vec<String>,
    /// Sorted by name; a later duplicate replaces an earlier one.
    pub env: Vec<EnvVar>,
    pub expose: Vec<Expose>,
    /// `params.storage`, sorted by volume name.
    pub mounts: Vec<StorageMount>,
    pub credentials: Option<Credentials>,
    /// `params.tee`: the trusted execution environment the service must run in.
    pub tee: Option<TeeParam>,
}

/// `params.tee` of a service: `cpu` or `cpu-gpu` (the values of Akash's schema).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TeeParam {
    pub line: usize,
    /// `cpu` or `cpu-gpu`.
    pub kind: String,
}

/// One `expose` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expose {
    pub line: usize,
    pub port: u16,
    /// `as`; equals `port` when not given.
    pub external_port: u16,
    pub proto: PortProto,
    pub global: bool,
    /// Services of this deployment that may reach the port, sorted.
    pub to_services: Vec<String>,
    /// A named IP endpoint (`to: - ip: name`).
    pub ip: Option<String>,
    /// `accept` host names, sorted.
    pub accept: Vec<String>,
    pub http_options: Option<HttpOptions>,
}

/// `http_options` of an exposed port, as written (Akash's limits checked); the manifest gets
/// them with Akash's defaults filled in.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HttpOptions {
    pub max_body_size: Option<u64>,
    pub proxy_buffer_size: Option<u64>,
    pub read_timeout: Option<u64>,
    pub send_timeout: Option<u64>,
    pub next_tries: Option<u64>,
    pub next_timeout: Option<u64>,
    pub next_cases: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageMount {
    pub line: usize,
    pub volume: String,
    pub path: String,
    pub read_only: bool,
}

/// Private registry credentials. Parsed and checked; [`to_orders`] refuses them until the
/// manifest can carry them sealed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub line: usize,
    pub host: String,
    pub username: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComputeProfile {
    pub name: String,
    pub line: usize,
    pub cpu_millis: u64,
    pub memory_bytes: u64,
    /// In the order written.
    pub storage: Vec<Volume>,
    pub gpu: Option<Gpu>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VolumeKind {
    /// Part of the replica's ephemeral storage.
    Ephemeral,
    /// A persistent volume of a storage class.
    Persistent,
    /// `class: ram`: a tmpfs counted in the replica's memory.
    Ram,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Volume {
    pub line: usize,
    /// `default` when not named.
    pub name: String,
    pub bytes: u64,
    pub kind: VolumeKind,
    /// Storage class of a persistent volume (`default` when not given).
    pub class: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gpu {
    pub units: u32,
    /// Lower case: `nvidia` or `amd`.
    pub vendor: String,
    /// Sorted by name; empty accepts any model of the vendor.
    pub models: Vec<GpuModelSpec>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlacementProfile {
    pub name: String,
    pub line: usize,
    /// Sorted by key.
    pub attributes: Vec<Attribute>,
    /// `signedBy.anyOf` / `allOf` auditor addresses: checked, not enforced by leasemesh.
    pub signed_by_any_of: Vec<String>,
    pub signed_by_all_of: Vec<String>,
    /// Price per compute profile, sorted by profile name.
    pub pricing: Vec<Price>,
    /// Line of the `pricing` key.
    pub pricing_line: usize,
}

/// Per replica, per block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Price {
    pub profile: String,
    pub line: usize,
    pub denom: String,
    pub amount: Decimal,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeploymentEntry {
    pub service: String,
    pub placement: String,
    pub profile: String,
    pub count: u32,
    pub line: usize,
}

impl Sdl {
    pub fn service(&self, name: &str) -> Option<&Service> {
        self.services.iter().find(|s| s.name == name)
    }

    pub fn profile(&self, name: &str) -> Option<&ComputeProfile> {
        self.compute.iter().find(|p| p.name == name)
    }

    pub fn placement(&self, name: &str) -> Option<&PlacementProfile> {
        self.placements.iter().find(|p| p.name == name)
    }
}

/// Reads and checks an SDL file. Never panics; every error names the key path and line.
pub fn parse(text: &str) -> Result<Sdl, SdlError> {
    read::read(text)
}
