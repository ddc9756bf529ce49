//! Trusted execution environments (Akash SDL `params.tee`) and the version-2 wire extension
//! that carries them.
//!
//! A body that asks for or offers nothing new (no TEE, no HTTP options) is **version 1 and
//! byte-for-byte what it was**: ids, signatures, goldens and matcher digests are unchanged. A
//! body that uses them is **version 2**: its version-1 bytes (with `version = 2`) followed by one
//! extension value ([`Extended::Ext`]). A node that speaks only version 1 refuses such a body
//! (unknown version, or trailing bytes), so a TEE requirement is never silently dropped. Each
//! type's `validate` checks that the version is exactly the one its content needs, so every
//! value has one spelling.
//!
//! Human-readable serializers (the JSON views of the API) get the version-1 fields only; the
//! objects themselves always travel as canonical bytes (`signed_hex`).

use std::marker::PhantomData;

use serde::de::{self, DeserializeOwned, DeserializeSeed, SeqAccess, Visitor};
use serde::ser::SerializeTuple;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The version of a body that uses the extension.
pub const EXTENDED_VERSION: u8 = 2;

/// A kind of trusted execution environment a replica runs in, as Akash's SDL names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TeeKind {
    /// Confidential CPU (AMD SEV-SNP or Intel TDX; the provider picks).
    Cpu,
    /// Confidential CPU and GPUs (GPU confidential-compute mode).
    CpuGpu,
}

impl TeeKind {
    /// `cpu` or `cpu-gpu`.
    pub fn as_str(self) -> &'static str {
        match self {
            TeeKind::Cpu => "cpu",
            TeeKind::CpuGpu => "cpu-gpu",
        }
    }

    /// Reads Akash's name of a TEE kind.
    pub fn parse(s: &str) -> Option<TeeKind> {
        match s {
            "cpu" => Some(TeeKind::Cpu),
            "cpu-gpu" => Some(TeeKind::CpuGpu),
            _ => None,
        }
    }
}

impl std::fmt::Display for TeeKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A body with a version-1 layout (its derived serde, generated with `#[serde(remote = "Self")]`)
/// and an extension that follows it when the version is [`EXTENDED_VERSION`].
pub(crate) trait Extended: Sized {
    type Ext: Serialize + DeserializeOwned;
    fn wire_version_field(&self) -> u8;
    /// The extension of a version-2 body.
    fn ext(&self) -> Self::Ext;
    /// Puts a decoded extension back; refuses one that does not fit the body.
    fn attach(&mut self, ext: Self::Ext) -> Result<(), &'static str>;
    fn ser_body<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error>;
    fn de_body<'de, D: Deserializer<'de>>(d: D) -> Result<Self, D::Error>;
}

struct Body<'a, T>(&'a T);

impl<T: Extended> Serialize for Body<'_, T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.ser_body(s)
    }
}

struct BodySeed<T>(PhantomData<T>);

impl<'de, T: Extended> DeserializeSeed<'de> for BodySeed<T> {
    type Value = T;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<T, D::Error> {
        T::de_body(d)
    }
}

/// Version 1: the body. Version 2: the body, then the extension (a postcard tuple adds no
/// bytes of its own).
pub(crate) fn serialize<T: Extended, S: Serializer>(v: &T, s: S) -> Result<S::Ok, S::Error> {
    if s.is_human_readable() {
        return v.ser_body(s);
    }
    let extended = v.wire_version_field() >= EXTENDED_VERSION;
    let mut t = s.serialize_tuple(if extended { 2 } else { 1 })?;
    t.serialize_element(&Body(v))?;
    if extended {
        t.serialize_element(&v.ext())?;
    }
    t.end()
}

struct ExtVisitor<T>(PhantomData<T>);

impl<'de, T: Extended> Visitor<'de> for ExtVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a body, and its extension if its version is 2")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<T, A::Error> {
        let mut body = seq
            .next_element_seed(BodySeed::<T>(PhantomData))?
            .ok_or_else(|| de::Error::invalid_length(0, &self))?;
        if body.wire_version_field() >= EXTENDED_VERSION {
            let ext: T::Ext =
                seq.next_element()?.ok_or_else(|| de::Error::invalid_length(1, &self))?;
            body.attach(ext).map_err(de::Error::custom)?;
        }
        Ok(body)
    }
}

pub(crate) fn deserialize<'de, T: Extended, D: Deserializer<'de>>(d: D) -> Result<T, D::Error> {
    if d.is_human_readable() {
        return T::de_body(d);
    }
    d.deserialize_tuple(2, ExtVisitor::<T>(PhantomData))
}

/// Implements `Serialize` and `Deserialize` for a type through its [`Extended`] impl.
macro_rules! extended_serde {
    ($t:ty) => {
        impl serde::Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                $crate::tee::serialize(self, s)
            }
        }
        impl<'de> serde::Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                $crate::tee::deserialize(d)
            }
        }
    };
}

/// A body's version must be exactly the one its content needs: one spelling per value.
pub(crate) fn check_version(
    field: &str,
    version: u8,
    needed: u8,
) -> Result<(), crate::validate::ValidationError> {
    if version == needed {
        return Ok(());
    }
    Err(crate::validate::ValidationError::Inconsistent {
        field: field.to_owned(),
        why: format!(
            "version {version}, but its content is version {needed} (2 with a TEE or HTTP options, 1 without)"
        ),
    })
}

fn version_for(extended: bool) -> u8 {
    if extended {
        EXTENDED_VERSION
    } else {
        crate::codec::PROTOCOL_VERSION
    }
}

// ---------------------------------------------------------------------------------------------
// Orders: the TEE of each group, in group order.

use crate::types::{Order, ProviderInfo};

impl Order {
    /// The version this order's content needs: 2 if a group asks for a TEE, else 1.
    pub fn wire_version(&self) -> u8 {
        version_for(self.groups.iter().any(|g| g.resources.tee.is_some()))
    }
}

impl Extended for Order {
    type Ext = Vec<Option<TeeKind>>;
    fn wire_version_field(&self) -> u8 {
        self.version
    }
    fn ext(&self) -> Self::Ext {
        self.groups.iter().map(|g| g.resources.tee).collect()
    }
    fn attach(&mut self, ext: Self::Ext) -> Result<(), &'static str> {
        if ext.len() != self.groups.len() {
            return Err("the order's TEE list does not have one entry per group");
        }
        for (g, tee) in self.groups.iter_mut().zip(ext) {
            g.resources.tee = tee;
        }
        Ok(())
    }
    fn ser_body<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        Order::serialize(self, s)
    }
    fn de_body<'de, D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Order::deserialize(d)
    }
}
extended_serde!(Order);

// ---------------------------------------------------------------------------------------------
// Provider infos: the TEE kinds of each host, in host order.

impl ProviderInfo {
    /// The version this info's content needs: 2 if a host offers a TEE, else 1.
    pub fn wire_version(&self) -> u8 {
        version_for(self.hosts.iter().any(|h| !h.tee.is_empty()))
    }
}

impl Extended for ProviderInfo {
    type Ext = Vec<Vec<TeeKind>>;
    fn wire_version_field(&self) -> u8 {
        self.version
    }
    fn ext(&self) -> Self::Ext {
        self.hosts.iter().map(|h| h.tee.clone()).collect()
    }
    fn attach(&mut self, ext: Self::Ext) -> Result<(), &'static str> {
        if ext.len() != self.hosts.len() {
            return Err("the provider info's TEE list does not have one entry per host");
        }
        for (h, tee) in self.hosts.iter_mut().zip(ext) {
            h.tee = tee;
        }
        Ok(())
    }
    fn ser_body<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        ProviderInfo::serialize(self, s)
    }
    fn de_body<'de, D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        ProviderInfo::deserialize(d)
    }
}
extended_serde!(ProviderInfo);

// ---------------------------------------------------------------------------------------------
// Manifests: per service, in group and service order, its TEE and its ports' HTTP options.

use crate::manifest::{HttpOptions, Manifest};

/// The manifest extension of one service: its TEE and the HTTP options of each exposed port.
type ServiceExt = (Option<TeeKind>, Vec<Option<HttpOptions>>);

impl Manifest {
    /// The version this manifest's content needs: 2 with a TEE or HTTP options, else 1.
    pub fn wire_version(&self) -> u8 {
        version_for(
            self.groups
                .iter()
                .flat_map(|g| &g.services)
                .any(|s| s.tee.is_some() || s.expose.iter().any(|p| p.http_options.is_some())),
        )
    }
}

impl Extended for Manifest {
    type Ext = Vec<ServiceExt>;
    fn wire_version_field(&self) -> u8 {
        self.version
    }
    fn ext(&self) -> Self::Ext {
        self.groups
            .iter()
            .flat_map(|g| &g.services)
            .map(|s| (s.tee, s.expose.iter().map(|p| p.http_options.clone()).collect()))
            .collect()
    }
    fn attach(&mut self, ext: Self::Ext) -> Result<(), &'static str> {
        let services = self.groups.iter_mut().flat_map(|g| g.services.iter_mut());
        let mut n = 0usize;
        for (s, (tee, http)) in services.zip(ext.iter()) {
            if http.len() != s.expose.len() {
                return Err("the manifest's HTTP options do not have one entry per port");
            }
            s.tee = *tee;
            for (p, h) in s.expose.iter_mut().zip(http) {
                p.http_options = h.clone();
            }
            n += 1;
        }
        let total: usize = self.groups.iter().map(|g| g.services.len()).sum();
        if n != total || ext.len() != total {
            return Err("the manifest's extension does not have one entry per service");
        }
        Ok(())
    }
    fn ser_body<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        Manifest::serialize(self, s)
    }
    fn de_body<'de, D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Manifest::deserialize(d)
    }
}
extended_serde!(Manifest);
