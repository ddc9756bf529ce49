//! References between sections, checked once every section is read.

use super::*;
use crate::manifest::PortProto;
use crate::sdl::VolumeKind;
impl Reader {
    /// Checks references; returns the `to: service` entries that name no service, as
    /// (service, expose index, target), for the caller to drop.
    pub(super) fn cross_check(
        &mut self,
        sdl: &Sdl,
    ) -> Result<Vec<(String, usize, String)>, SdlError> {
        let mut unknown_targets = Vec::new();
        for d in &sdl.deployment {
            let path = format!("deployment.{}.{}", d.service, d.placement);
            let Some(placement) = sdl.placement(&d.placement) else {
                return Err(SdlError::UnknownRef {
                    path,
                    line: d.line,
                    what: "placement",
                    name: d.placement.clone(),
                    hint: declared(sdl.placements.iter().map(|p| p.name.clone())),
                });
            };
            let Some(profile) = sdl.profile(&d.profile) else {
                return Err(SdlError::UnknownRef {
                    path: child(&path, "profile"),
                    line: d.line,
                    what: "compute profile",
                    name: d.profile.clone(),
                    hint: declared(sdl.compute.iter().map(|p| p.name.clone())),
                });
            };
            if placement.pricing.iter().all(|p| p.profile != d.profile) {
                return Err(SdlError::Missing {
                    path: format!("profiles.placement.{}.pricing.{}", d.placement, d.profile),
                    line: placement.pricing_line,
                    hint: "every profile deployed in a placement needs a price there",
                });
            }
            let Some(service) = sdl.service(&d.service) else { continue };
            for m in &service.mounts {
                let mpath = format!("services.{}.params.storage.{}", service.name, m.volume);
                match profile.storage.iter().find(|v| v.name == m.volume) {
                    None => {
                        return Err(SdlError::UnknownRef {
                            path: mpath,
                            line: m.line,
                            what: "volume",
                            name: m.volume.clone(),
                            hint: format!(
                                " in compute profile {}{}",
                                profile.name,
                                declared(profile.storage.iter().map(|v| v.name.clone()))
                            ),
                        })
                    }
                    Some(v) if v.kind == VolumeKind::Ram && m.read_only => {
                        return Err(bad(
                            &child(&mpath, "readOnly"),
                            m.line,
                            "true",
                            "a ram volume cannot be read-only",
                        ));
                    }
                    Some(_) => {}
                }
            }
        }
        for s in &sdl.services {
            if sdl.deployment.iter().all(|d| d.service != s.name) {
                self.warn(
                    &format!("services.{}", s.name),
                    s.line,
                    "not deployed anywhere: no order runs it",
                );
            }
            for (i, x) in s.expose.iter().enumerate() {
                let path = format!("services.{}.expose[{i}]", s.name);
                for t in &x.to_services {
                    if sdl.service(t).is_none() {
                        unknown_targets.push((s.name.clone(), i, t.clone()));
                        self.warn(
                            &child(&path, "to"),
                            x.line,
                            format!(
                                "service {t:?} is not declared{}; that entry is ignored",
                                declared(sdl.services.iter().map(|s| s.name.clone()))
                            ),
                        );
                    }
                }
                if let Some(ip) = &x.ip {
                    if !sdl.endpoints.contains(ip) {
                        return Err(SdlError::UnknownRef {
                            path: child(&path, "to"),
                            line: x.line,
                            what: "endpoint",
                            name: ip.clone(),
                            hint: " under endpoints: with kind: ip".to_owned(),
                        });
                    }
                }
            }
        }
        Ok(unknown_targets)
    }
}

impl Reader {
    /// The checks of Akash's Go parser that span sections (its `validate` and the manifest's),
    /// each refused as Akash refuses it.
    pub(super) fn akash_checks(&mut self, sdl: &Sdl) -> Result<(), SdlError> {
        self.mounted_persistent_volumes(sdl)?;
        ip_endpoints(sdl)?;
        tee_per_placement(sdl)?;
        manifest_rules(sdl)
    }

    /// A persistent volume that the service deployed with it does not mount. Akash's 2.0
    /// parser refuses it when the service mounts no volume at all; its 2.1 parser (and the 2.0
    /// one when another volume is mounted) lets it through, so leasemesh warns there: the
    /// volume is reserved and paid for, and no container sees it.
    fn mounted_persistent_volumes(&mut self, sdl: &Sdl) -> Result<(), SdlError> {
        for d in &sdl.deployment {
            let (Some(service), Some(profile)) = (sdl.service(&d.service), sdl.profile(&d.profile))
            else {
                continue;
            };
            for v in profile.storage.iter().filter(|v| v.kind == VolumeKind::Persistent) {
                if service.mounts.iter().any(|m| m.volume == v.name) {
                    continue;
                }
                let path = format!("profiles.compute.{}.resources.storage", profile.name);
                if sdl.version != "2.0" || !service.mounts.is_empty() {
                    self.warn(
                        &path,
                        v.line,
                        format!(
                            "persistent volume {} is never mounted by service {}: it is reserved and paid for, and no container sees it",
                            v.name, service.name
                        ),
                    );
                } else {
                    return Err(bad(
                        &path,
                        v.line,
                        &v.name,
                        format!(
                            "Akash refuses a persistent volume that is never mounted: mount it with services.{}.params.storage.{}.mount",
                            service.name, v.name
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Every declared endpoint is used, and one endpoint, port and protocol serve one service.
fn ip_endpoints(sdl: &Sdl) -> Result<(), SdlError> {
    let mut used: Vec<(&str, u16, PortProto, &str)> = Vec::new();
    for s in &sdl.services {
        if sdl.deployment.iter().all(|d| d.service != s.name) {
            continue;
        }
        for (i, x) in s.expose.iter().enumerate() {
            let Some(ip) = &x.ip else { continue };
            if let Some((_, _, _, other)) = used.iter().find(|(e, p, pr, o)| {
                *e == ip.as_str() && *p == x.external_port && *pr == x.proto && *o != s.name
            }) {
                return Err(bad(
                    &format!("services.{}.expose[{i}].to", s.name),
                    x.line,
                    ip,
                    format!(
                        "IP endpoint {ip} port {} is already used by service {other}",
                        x.external_port
                    ),
                ));
            }
            used.push((ip, x.external_port, x.proto, &s.name));
        }
    }
    for name in &sdl.endpoints {
        if used.iter().all(|(e, _, _, _)| e != name) {
            return Err(bad(
                &format!("endpoints.{name}"),
                sdl.endpoint_lines.iter().find(|(n, _)| n == name).map_or(1, |(_, l)| *l),
                name,
                "Akash refuses an endpoint that no deployed service uses (expose.to: - ip: NAME, global: true)",
            ));
        }
    }
    Ok(())
}

/// `cpu-gpu` needs GPUs; one placement asks for one TEE type.
fn tee_per_placement(sdl: &Sdl) -> Result<(), SdlError> {
    let mut seen: Vec<(&str, &str, &str)> = Vec::new();
    for d in &sdl.deployment {
        let Some(service) = sdl.service(&d.service) else { continue };
        let Some(tee) = &service.tee else { continue };
        let path = format!("services.{}.params.tee", service.name);
        let gpus = sdl.profile(&d.profile).is_some_and(|p| p.gpu.is_some());
        if tee.kind == "cpu-gpu" && !gpus {
            return Err(bad(
                &path,
                tee.line,
                &tee.kind,
                format!("cpu-gpu needs GPUs in compute profile {}", d.profile),
            ));
        }
        if let Some((_, kind, other)) =
            seen.iter().find(|(p, k, _)| *p == d.placement && *k != tee.kind)
        {
            return Err(bad(
                &path,
                tee.line,
                &tee.kind,
                format!(
                    "Akash refuses two TEE types in placement {}: service {other} asks for {kind}",
                    d.placement
                ),
            ));
        }
        seen.push((&d.placement, &tee.kind, &service.name));
    }
    Ok(())
}

/// What Akash's manifest check refuses: service names that are not DNS labels, env names
/// Kubernetes refuses, accept host names that are not DNS names or are used twice, and a
/// deployment with no global port.
fn manifest_rules(sdl: &Sdl) -> Result<(), SdlError> {
    let mut hosts: Vec<(&str, &str)> = Vec::new();
    let mut global = false;
    for s in &sdl.services {
        if sdl.deployment.iter().all(|d| d.service != s.name) {
            continue;
        }
        let path = format!("services.{}", s.name);
        if !dns_label(&s.name) {
            return Err(bad(
                &path,
                s.line,
                &s.name,
                "Akash's service names are lower-case letters, digits and '-', a letter first, no '-' last",
            ));
        }
        if let Some(e) = s.env.iter().find(|e| !env_name_ok(&e.name)) {
            return Err(bad(
                &child(&path, "env"),
                s.line,
                &e.name,
                "an env name is letters, digits, '-', '.' or '_', not starting with a digit",
            ));
        }
        for (i, x) in s.expose.iter().enumerate() {
            global |= x.global;
            for h in &x.accept {
                let p = format!("{path}.expose[{i}].accept");
                if !dns_subdomain(h) {
                    return Err(bad(&p, x.line, h, "Akash needs a DNS name (lower case)"));
                }
                match hosts.iter().find(|(host, _)| host == h) {
                    Some((_, other)) if *other != s.name => {
                        return Err(bad(&p, x.line, h, format!("also accepted by service {other}")))
                    }
                    _ => hosts.push((h, &s.name)),
                }
            }
        }
    }
    if !global && !sdl.deployment.is_empty() {
        return Err(bad(
            "services",
            1,
            "",
            "Akash refuses a deployment with no global port: expose one with to: - global: true",
        ));
    }
    Ok(())
}

fn dns_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_lowercase()
        && b[b.len() - 1] != b'-'
        && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
}

/// Kubernetes' subdomain rule: dot-separated labels of lower-case letters, digits and '-',
/// each starting and ending with a letter or digit, at most 253 characters.
fn dns_subdomain(s: &str) -> bool {
    s.len() <= 253
        && s.split('.').all(|l| {
            let b = l.as_bytes();
            !b.is_empty()
                && b[0].is_ascii_alphanumeric()
                && b[b.len() - 1].is_ascii_alphanumeric()
                && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        })
}

/// Kubernetes' env name rule (`[-._a-zA-Z][-._a-zA-Z0-9]*`).
fn env_name_ok(s: &str) -> bool {
    let mut b = s.bytes();
    b.next().is_some_and(|c| c.is_ascii_alphabetic() || b"-._".contains(&c))
        && b.all(|c| c.is_ascii_alphanumeric() || b"-._".contains(&c))
}
