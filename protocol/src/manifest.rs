//! The deployment a tenant delivers privately to the winning provider. The order carries only
//! its hash ([`Manifest::hash`]); the provider refuses a manifest whose hash differs.

use serde::{Deserialize, Serialize};

use crate::codec::{from_canonical, to_canonical, DecodeError, PROTOCOL_VERSION};
use crate::crypto::Hash;
use crate::tee::{TeeKind, EXTENDED_VERSION};
use crate::validate::{ident, max_len, non_empty, sorted_unique, text, ValidationError};

/// Largest encoded manifest accepted, in bytes.
pub const MAX_MANIFEST_SIZE: usize = 256 * 1024;

/// The whole deployment: one group per placement (one per order). Version 2 when a service
/// runs in a TEE or a port has HTTP options (see [`crate::tee`]), version 1 otherwise.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(remote = "Self")]
pub struct Manifest {
    pub version: u8,
    /// Sorted by name.
    pub groups: Vec<ManifestGroup>,
}

/// The services of one placement group; its name equals the order's `placement.name`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestGroup {
    pub name: String,
    /// Sorted by name.
    pub services: Vec<ServiceManifest>,
}

/// One service: what each of its replicas runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceManifest {
    pub name: String,
    pub image: String,
    /// Replaces the image's entrypoint when non-empty.
    pub command: Vec<String>,
    /// Replaces the image's arguments when non-empty.
    pub args: Vec<String>,
    /// Sorted by name.
    pub env: Vec<EnvVar>,
    pub expose: Vec<ExposedPort>,
    pub mounts: Vec<Mount>,
    pub count: u32,
    pub gpu_units: u32,
    /// The TEE the service runs in, as its order group asks (version-2 extension).
    #[serde(skip)]
    pub tee: Option<TeeKind>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct EnvVar {
    pub name: String,
    pub value: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PortProto {
    Tcp,
    Udp,
}

/// A container port and who may reach it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExposedPort {
    pub port: u16,
    /// The port outside (SDL `as`); equals `port` when not given.
    pub external_port: u16,
    pub proto: PortProto,
    /// Reachable from outside the lease.
    pub global: bool,
    /// HTTP host names to accept (SDL `accept`).
    pub hosts: Vec<String>,
    /// Other services of the deployment that may reach this port.
    pub to_services: Vec<String>,
    /// A named IP endpoint (SDL `to: - ip:`), if any.
    pub ip_endpoint: Option<String>,
    /// HTTP proxy options (SDL `http_options`) for a provider's ingress (version-2 extension).
    #[serde(skip)]
    pub http_options: Option<HttpOptions>,
}

/// HTTP options of an exposed port, with Akash's defaults filled in for what the SDL left out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpOptions {
    /// Largest request body in bytes (Akash's default 1 MiB, at most 100 MiB).
    pub max_body_size: u32,
    /// Upstream response header buffer in bytes; 0 leaves it to the provider (at most 1 MiB).
    pub proxy_buffer_size: u32,
    /// In milliseconds (default and most 60 s).
    pub read_timeout_ms: u32,
    pub send_timeout_ms: u32,
    /// Tries on the next upstream (default 3) and how long they may take (0: no limit).
    pub next_tries: u32,
    pub next_timeout_ms: u32,
    /// When to try the next upstream: `error`, `timeout`, `500`, ... or only `off`.
    pub next_cases: Vec<String>,
}

/// A persistent or RAM volume mounted into the container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mount {
    pub volume: String,
    pub path: String,
    pub read_only: bool,
    /// What backs the volume: the provider needs it to mount a tmpfs or a disk.
    pub kind: MountKind,
}

/// What backs a mounted volume (from the SDL storage attributes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MountKind {
    /// The persistent volume of the same name in the order group's `persistent_storage`.
    Persistent,
    /// Part of the replica's ephemeral storage.
    Ephemeral,
    /// A tmpfs of this many bytes (SDL `class: ram`), already counted in the replica's
    /// `memory_bytes`: it lives in the container's memory limit.
    Ram { bytes: u64 },
}

impl Manifest {
    /// The hash an order commits to.
    pub fn hash(&self) -> Hash {
        Hash::domain("leasemesh/v1/manifest", &[&to_canonical(self)])
    }

    pub fn encode(&self) -> Vec<u8> {
        to_canonical(self)
    }

    /// Strict decode plus value checks.
    pub fn decode(bytes: &[u8]) -> Result<Manifest, DecodeError> {
        let m: Manifest = from_canonical("manifest", bytes, MAX_MANIFEST_SIZE)?;
        if !(PROTOCOL_VERSION..=EXTENDED_VERSION).contains(&m.version) {
            return Err(DecodeError::UnknownVersion {
                what: "manifest",
                got: m.version,
                supported: EXTENDED_VERSION,
            });
        }
        m.validate().map_err(|source| DecodeError::Invalid { what: "manifest", source })?;
        Ok(m)
    }

    /// The group for an order's placement.
    pub fn group(&self, placement: &str) -> Option<&ManifestGroup> {
        self.groups.iter().find(|g| g.name == placement)
    }

    pub fn validate(&self) -> Result<(), ValidationError> {
        crate::tee::check_version("version", self.version, self.wire_version())?;
        non_empty("groups", &self.groups)?;
        max_len("groups", &self.groups, 64)?;
        sorted_unique("groups", self.groups.iter().map(|g| g.name.as_str()))?;
        for g in &self.groups {
            ident("groups.name", &g.name, 64)?;
            non_empty(&format!("groups.{}.services", g.name), &g.services)?;
            sorted_unique(
                &format!("groups.{}.services", g.name),
                g.services.iter().map(|s| s.name.as_str()),
            )?;
            for s in &g.services {
                let f = format!("groups.{}.services.{}", g.name, s.name);
                ident(&format!("{f}.name"), &s.name, 64)?;
                text(&format!("{f}.image"), &s.image, 256)?;
                if s.image.is_empty() {
                    return Err(ValidationError::Empty { field: format!("{f}.image") });
                }
                max_len(&format!("{f}.command"), &s.command, 64)?;
                max_len(&format!("{f}.args"), &s.args, 256)?;
                max_len(&format!("{f}.env"), &s.env, 256)?;
                sorted_unique(&format!("{f}.env"), s.env.iter().map(|e| e.name.as_str()))?;
                max_len(&format!("{f}.expose"), &s.expose, 64)?;
                for p in &s.expose {
                    if p.port == 0 {
                        return Err(ValidationError::Zero { field: format!("{f}.expose.port") });
                    }
                    if let Some(h) = &p.http_options {
                        max_len(&format!("{f}.expose.http_options.next_cases"), &h.next_cases, 10)?;
                        for c in &h.next_cases {
                            ident(&format!("{f}.expose.http_options.next_cases"), c, 16)?;
                        }
                    }
                }
                max_len(&format!("{f}.mounts"), &s.mounts, 16)?;
            }
        }
        Ok(())
    }
}
