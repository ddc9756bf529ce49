//! From the YAML tree to a checked [`Sdl`]: shapes, values, and the references between
//! services, profiles, placements, volumes and endpoints.
//!
//! Like Akash (whose Go decoder ignores unknown keys), unknown keys are accepted and reported as
//! warnings; docker-compose keys get a warning that says what to write instead.

use super::error::{SdlError, SdlWarning};
use super::units::{self, Decimal, UnitSpelling};
use super::yaml::{self, Key, Kind, Node};
use super::{
    ComputeProfile, Credentials, DeploymentEntry, Expose, Gpu, HttpOptions, PlacementProfile,
    Price, Sdl, Service, StorageMount, Volume, VolumeKind,
};
use crate::manifest::{EnvVar, PortProto};
use crate::types::{Attribute, Coin, GpuInterface, GpuModelSpec, MAX_REPLICAS};

type Entries = [(Key, Node)];

/// Keys docker-compose users carry over; Akash ignores them. `(key, what to do instead)`.
const COMPOSE_KEYS: [(&str, &str); 14] = [
    ("depends_on", "services reach each other by name through expose.to.service"),
    ("depends-on", "services reach each other by name through expose.to.service"),
    ("restart", "leasemesh restarts failed containers"),
    ("volumes", "declare storage in profiles.compute and mount it with params.storage"),
    ("cmd", "use command and args"),
    ("environment", "use env (a list of NAME=value); these variables are NOT set"),
    ("links", "services reach each other by name"),
    ("ports", "use expose"),
    ("container_name", "the service name is the container name"),
    ("build", "give a pushed image"),
    ("networks", "use expose.to"),
    ("healthcheck", "health checks are not part of SDL"),
    ("entrypoint", "use command"),
    ("working_dir", "set it in the image"),
];

struct Reader {
    warnings: Vec<SdlWarning>,
}

fn child(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

fn wrong(n: &Node, path: &str, expected: &'static str) -> SdlError {
    SdlError::WrongType { path: path.to_owned(), line: n.line, expected, found: n.type_name() }
}

fn bad(path: &str, line: usize, value: &str, why: impl Into<String>) -> SdlError {
    SdlError::BadValue {
        path: path.to_owned(),
        line,
        value: value.chars().take(80).collect(),
        why: why.into(),
    }
}

fn missing(path: &str, line: usize, hint: &'static str) -> SdlError {
    SdlError::Missing { path: path.to_owned(), line, hint }
}

fn get<'a>(entries: &'a Entries, key: &str) -> Option<&'a (Key, Node)> {
    entries.iter().find(|(k, _)| k.text == key)
}

/// A map, or `None` for an absent or null value.
fn opt_map<'a>(n: Option<&'a (Key, Node)>, path: &str) -> Result<Option<&'a Entries>, SdlError> {
    match n {
        None => Ok(None),
        Some((_, v)) if v.is_null() => Ok(None),
        Some((_, Node { kind: Kind::Map(e), .. })) => Ok(Some(e)),
        Some((_, v)) => Err(wrong(v, path, "a map")),
    }
}

fn req_map<'a>(
    n: Option<&'a (Key, Node)>,
    path: &str,
    parent_line: usize,
    hint: &'static str,
) -> Result<(&'a Entries, usize), SdlError> {
    match n {
        None => Err(missing(path, parent_line, hint)),
        Some((k, v)) if v.is_null() => Err(missing(path, k.line, hint)),
        Some((k, Node { kind: Kind::Map(e), .. })) => Ok((e, k.line)),
        Some((_, v)) => Err(wrong(v, path, "a map")),
    }
}

/// A list, or empty for an absent or null value.
fn opt_seq<'a>(n: Option<&'a (Key, Node)>, path: &str) -> Result<&'a [Node], SdlError> {
    match n {
        None => Ok(&[]),
        Some((_, v)) if v.is_null() => Ok(&[]),
        Some((_, Node { kind: Kind::Seq(items), .. })) => Ok(items),
        Some((_, v)) => Err(wrong(v, path, "a list")),
    }
}

/// Any scalar's text; null is refused as missing.
fn text<'a>(n: &'a Node, path: &str, hint: &'static str) -> Result<&'a str, SdlError> {
    if n.is_null() {
        return Err(missing(path, n.line, hint));
    }
    match &n.kind {
        Kind::Scalar { text, .. } => Ok(text),
        _ => Err(wrong(n, path, "a single value")),
    }
}

fn req_text<'a>(
    entries: &'a Entries,
    key: &str,
    path: &str,
    parent_line: usize,
    hint: &'static str,
) -> Result<(&'a str, usize), SdlError> {
    let p = child(path, key);
    match get(entries, key) {
        None => Err(missing(&p, parent_line, hint)),
        Some((k, v)) => Ok((text(v, &p, hint)?, k.line)),
    }
}

fn uint(n: &Node, path: &str, hint: &'static str) -> Result<u64, SdlError> {
    let t = text(n, path, hint)?.trim();
    t.parse::<u64>().map_err(|_| bad(path, n.line, t, "expected a whole number"))
}

fn boolean(n: &Node, path: &str) -> Result<bool, SdlError> {
    let t = text(n, path, "write true or false")?.trim();
    match t.to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" => Ok(true),
        "false" | "no" | "off" => Ok(false),
        _ => Err(bad(path, n.line, t, "expected true or false")),
    }
}

fn strings(items: &[Node], path: &str) -> Result<Vec<String>, SdlError> {
    items
        .iter()
        .enumerate()
        .map(|(i, n)| text(n, &format!("{path}[{i}]"), "remove the empty item").map(str::to_owned))
        .collect()
}

/// Service, profile, placement and volume names: what the protocol's identifiers allow.
fn name_ok(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
}

fn check_name(path: &str, line: usize, s: &str) -> Result<(), SdlError> {
    if name_ok(s) {
        Ok(())
    } else {
        Err(bad(path, line, s, "a name is 1-64 letters, digits, '.', '_' or '-'"))
    }
}

fn declared(names: impl Iterator<Item = String>) -> String {
    let all: Vec<String> = names.collect();
    if all.is_empty() {
        String::new()
    } else {
        format!(" (declared: {})", all.join(", "))
    }
}

impl Reader {
    fn warn(&mut self, path: &str, line: usize, message: impl Into<String>) {
        self.warnings.push(SdlWarning { path: path.to_owned(), line, message: message.into() });
    }

    /// Warns about every key not in `known` (Akash ignores them; so do we, but say so).
    fn unknown_keys(&mut self, entries: &Entries, path: &str, known: &[&str]) {
        for (k, _) in entries {
            if known.contains(&k.text.as_str()) {
                continue;
            }
            let p = child(path, &k.text);
            match COMPOSE_KEYS.iter().find(|(c, _)| *c == k.text) {
                Some((_, instead)) => self.warn(
                    &p,
                    k.line,
                    format!("docker-compose key, ignored as Akash ignores it: {instead}"),
                ),
                None => self.warn(&p, k.line, "unknown key, ignored as Akash ignores it (a typo?)"),
            }
        }
    }

    fn size(&mut self, n: &Node, path: &str, hint: &'static str) -> Result<u64, SdlError> {
        let t = text(n, path, hint)?;
        let (bytes, spelling) = units::size_bytes(t).map_err(|why| bad(path, n.line, t, why))?;
        if spelling == UnitSpelling::Lenient {
            self.warn(
                path,
                n.line,
                format!(
                    "size unit in {t:?} is not one Akash's Go parser accepts (k Ki M Mi G Gi T Ti); read as {bytes} bytes like Akash Console does ('i' = powers of 1024, otherwise 1000)"
                ),
            );
        }
        Ok(bytes)
    }

    fn read(&mut self, root: &Node) -> Result<Sdl, SdlError> {
        let Kind::Map(top) = &root.kind else {
            return Err(wrong(
                root,
                "(document)",
                "a map with version, services, profiles and deployment",
            ));
        };
        self.unknown_keys(top, "", &["version", "services", "profiles", "deployment", "endpoints"]);
        let version = self.version(top)?;
        let endpoints = self.endpoints(top)?;

        let (services_map, _) =
            req_map(get(top, "services"), "services", 1, "an SDL file declares its services")?;
        let mut services = Vec::new();
        for (k, v) in services_map {
            let path = child("services", &k.text);
            check_name(&path, k.line, &k.text)?;
            services.push(self.service(&k.text, k.line, v, &path)?);
        }
        services.sort_by(|a, b| a.name.cmp(&b.name));

        let (profiles, profiles_line) = req_map(
            get(top, "profiles"),
            "profiles",
            1,
            "an SDL file has profiles.compute and profiles.placement",
        )?;
        self.unknown_keys(profiles, "profiles", &["compute", "placement"]);
        let (compute_map, _) = req_map(
            get(profiles, "compute"),
            "profiles.compute",
            profiles_line,
            "declare the resources of each service",
        )?;
        let mut compute = Vec::new();
        for (k, v) in compute_map {
            let path = child("profiles.compute", &k.text);
            check_name(&path, k.line, &k.text)?;
            compute.push(self.compute(&k.text, k.line, v, &path)?);
        }
        compute.sort_by(|a, b| a.name.cmp(&b.name));

        let (placement_map, _) = req_map(
            get(profiles, "placement"),
            "profiles.placement",
            profiles_line,
            "declare at least one placement with pricing",
        )?;
        let mut placements = Vec::new();
        for (k, v) in placement_map {
            let path = child("profiles.placement", &k.text);
            check_name(&path, k.line, &k.text)?;
            placements.push(self.placement(&k.text, k.line, v, &path)?);
        }
        placements.sort_by(|a, b| a.name.cmp(&b.name));

        let (deployment_map, _) = req_map(
            get(top, "deployment"),
            "deployment",
            1,
            "say which service runs where, with which profile",
        )?;
        let mut deployment = Vec::new();
        for (sk, sv) in deployment_map {
            let spath = child("deployment", &sk.text);
            let Kind::Map(per_placement) = &sv.kind else {
                return Err(wrong(sv, &spath, "a map of placement name to profile and count"));
            };
            if services.iter().all(|s| s.name != sk.text) {
                return Err(SdlError::UnknownRef {
                    path: spath,
                    line: sk.line,
                    what: "service",
                    name: sk.text.clone(),
                    hint: declared(services.iter().map(|s| s.name.clone())),
                });
            }
            for (pk, pv) in per_placement {
                deployment.push(self.deployment_entry(
                    &sk.text,
                    pk,
                    pv,
                    &child(&spath, &pk.text),
                )?);
            }
        }
        deployment.sort_by(|a, b| (&a.placement, &a.service).cmp(&(&b.placement, &b.service)));

        let mut sdl = Sdl {
            version,
            services,
            compute,
            placements,
            deployment,
            endpoints,
            warnings: Vec::new(),
        };
        for (service, i, target) in self.cross_check(&sdl)? {
            if let Some(x) = sdl
                .services
                .iter_mut()
                .find(|s| s.name == service)
                .and_then(|s| s.expose.get_mut(i))
            {
                x.to_services.retain(|t| *t != target);
            }
        }
        sdl.warnings = std::mem::take(&mut self.warnings);
        Ok(sdl)
    }

    fn version(&mut self, top: &Entries) -> Result<String, SdlError> {
        let (v, line) = req_text(top, "version", "", 1, "write version: \"2.0\"")?;
        match v.trim() {
            "2.0" | "2.1" => Ok(v.trim().to_owned()),
            "2" | "2.0.0" => Ok("2.0".to_owned()),
            "2.1.0" => Ok("2.1".to_owned()),
            other => Err(bad("version", line, other, "leasemesh reads SDL versions 2.0 and 2.1")),
        }
    }

    fn endpoints(&mut self, top: &Entries) -> Result<Vec<String>, SdlError> {
        let Some(map) = opt_map(get(top, "endpoints"), "endpoints")? else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for (k, v) in map {
            let path = child("endpoints", &k.text);
            check_name(&path, k.line, &k.text)?;
            let Kind::Map(e) = &v.kind else {
                return Err(wrong(v, &path, "a map with kind: ip"));
            };
            self.unknown_keys(e, &path, &["kind"]);
            let (kind, line) = req_text(e, "kind", &path, k.line, "write kind: ip")?;
            if kind != "ip" {
                return Err(bad(&child(&path, "kind"), line, kind, "the only endpoint kind is ip"));
            }
            out.push(k.text.clone());
        }
        out.sort();
        Ok(out)
    }

    fn service(
        &mut self,
        name: &str,
        line: usize,
        n: &Node,
        path: &str,
    ) -> Result<Service, SdlError> {
        let Kind::Map(e) = &n.kind else {
            return Err(wrong(n, path, "a map with image, expose, ..."));
        };
        self.unknown_keys(
            e,
            path,
            &["image", "command", "args", "env", "expose", "params", "credentials"],
        );
        let (image, image_line) = req_text(e, "image", path, line, "give the container image")?;
        if image.trim().is_empty() || image.chars().any(char::is_whitespace) {
            return Err(bad(
                &child(path, "image"),
                image_line,
                image,
                "an image name has no spaces",
            ));
        }
        let command =
            strings(opt_seq(get(e, "command"), &child(path, "command"))?, &child(path, "command"))?;
        let args = strings(opt_seq(get(e, "args"), &child(path, "args"))?, &child(path, "args"))?;

        let env_path = child(path, "env");
        let mut env: Vec<EnvVar> = Vec::new();
        for (i, item) in opt_seq(get(e, "env"), &env_path)?.iter().enumerate() {
            let p = format!("{env_path}[{i}]");
            let t = text(item, &p, "remove the empty item")?;
            let (k, v) = t.split_once('=').unwrap_or((t, ""));
            if k.is_empty() || k.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(bad(&p, item.line, t, "an env item is NAME=value"));
            }
            if let Some(old) = env.iter_mut().find(|x| x.name == k) {
                self.warn(&p, item.line, format!("{k} is set twice; the later value wins"));
                old.value = v.to_owned();
            } else {
                env.push(EnvVar { name: k.to_owned(), value: v.to_owned() });
            }
        }
        env.sort();

        let expose_path = child(path, "expose");
        let mut expose = Vec::new();
        for (i, item) in opt_seq(get(e, "expose"), &expose_path)?.iter().enumerate() {
            expose.push(self.expose(item, &format!("{expose_path}[{i}]"))?);
        }

        let params_path = child(path, "params");
        let mut mounts = Vec::new();
        if let Some(params) = opt_map(get(e, "params"), &params_path)? {
            self.unknown_keys(params, &params_path, &["storage"]);
            let storage_path = child(&params_path, "storage");
            for (vk, vv) in opt_map(get(params, "storage"), &storage_path)?.unwrap_or(&[]) {
                let p = child(&storage_path, &vk.text);
                let Kind::Map(m) = &vv.kind else {
                    return Err(wrong(vv, &p, "a map with mount (and readOnly)"));
                };
                self.unknown_keys(m, &p, &["mount", "readOnly"]);
                let (mount, mline) =
                    req_text(m, "mount", &p, vk.line, "give the path inside the container")?;
                if !mount.starts_with('/') {
                    return Err(bad(&child(&p, "mount"), mline, mount, "a mount path is absolute"));
                }
                let read_only = match get(m, "readOnly") {
                    Some((_, v)) if !v.is_null() => boolean(v, &child(&p, "readOnly"))?,
                    _ => false,
                };
                if let Some(other) = mounts.iter().find(|x: &&StorageMount| x.path == mount) {
                    return Err(bad(
                        &child(&p, "mount"),
                        mline,
                        mount,
                        format!("already used by volume {}", other.volume),
                    ));
                }
                mounts.push(StorageMount {
                    line: vk.line,
                    volume: vk.text.clone(),
                    path: mount.to_owned(),
                    read_only,
                });
            }
        }
        mounts.sort_by(|a, b| a.volume.cmp(&b.volume));

        let cred_path = child(path, "credentials");
        let credentials = match opt_map(get(e, "credentials"), &cred_path)? {
            None => None,
            Some(c) => {
                let line = get(e, "credentials").map_or(line, |(k, _)| k.line);
                self.unknown_keys(c, &cred_path, &["host", "username", "password", "email"]);
                let (host, _) = req_text(c, "host", &cred_path, line, "give the registry host")?;
                let (username, _) =
                    req_text(c, "username", &cred_path, line, "give the registry user")?;
                req_text(c, "password", &cred_path, line, "give the registry password or token")?;
                Some(Credentials { line, host: host.to_owned(), username: username.to_owned() })
            }
        };

        Ok(Service {
            name: name.to_owned(),
            line,
            image: image.to_owned(),
            command,
            args,
            env,
            expose,
            mounts,
            credentials,
        })
    }

    fn port(&mut self, e: &Entries, key: &str, path: &str) -> Result<Option<u16>, SdlError> {
        let p = child(path, key);
        match get(e, key) {
            None => Ok(None),
            Some((k, v)) if v.is_null() => {
                Err(missing(&p, k.line, "give a port number from 1 to 65535, or remove the key"))
            }
            Some((_, v)) => {
                let n = uint(v, &p, "give a port number")?;
                match u16::try_from(n) {
                    Ok(0) | Err(_) => Err(bad(&p, v.line, &n.to_string(), "a port is 1 to 65535")),
                    Ok(port) => Ok(Some(port)),
                }
            }
        }
    }

    fn expose(&mut self, n: &Node, path: &str) -> Result<Expose, SdlError> {
        let Kind::Map(e) = &n.kind else {
            return Err(wrong(n, path, "a map with port, as, to, ..."));
        };
        self.unknown_keys(e, path, &["port", "as", "proto", "to", "accept", "http_options"]);
        let port = self
            .port(e, "port", path)?
            .ok_or_else(|| missing(&child(path, "port"), n.line, "give the container port"))?;
        let external_port = self.port(e, "as", path)?.unwrap_or(port);
        let proto = match get(e, "proto") {
            None => PortProto::Tcp,
            Some((_, v)) if v.is_null() => PortProto::Tcp,
            Some((_, v)) => {
                let p = child(path, "proto");
                let t = text(v, &p, "write tcp or udp")?;
                match t.to_ascii_lowercase().as_str() {
                    "tcp" => PortProto::Tcp,
                    "udp" => PortProto::Udp,
                    _ => return Err(bad(&p, v.line, t, "the protocol is tcp or udp")),
                }
            }
        };
        let mut global = false;
        let mut to_services = Vec::new();
        let mut ip = None;
        let to_path = child(path, "to");
        for (i, item) in opt_seq(get(e, "to"), &to_path)?.iter().enumerate() {
            let p = format!("{to_path}[{i}]");
            let Kind::Map(t) = &item.kind else {
                return Err(wrong(item, &p, "a map with global, service or ip"));
            };
            self.unknown_keys(t, &p, &["global", "service", "ip"]);
            let mut named = false;
            let mut entry_global = false;
            if let Some((_, v)) = get(t, "global") {
                if !v.is_null() {
                    entry_global = boolean(v, &child(&p, "global"))?;
                    global |= entry_global;
                    named = true;
                }
            }
            if let Some((_, v)) = get(t, "service") {
                if !v.is_null() {
                    let s = text(v, &child(&p, "service"), "name a service")?;
                    to_services.push(s.to_owned());
                    named = true;
                }
            }
            if let Some((_, v)) = get(t, "ip") {
                if !v.is_null() {
                    let ip_path = child(&p, "ip");
                    let name = text(v, &ip_path, "name an endpoint")?;
                    if !entry_global {
                        return Err(bad(
                            &ip_path,
                            v.line,
                            name,
                            "an IP endpoint needs global: true in the same entry",
                        ));
                    }
                    if ip.as_ref().is_some_and(|old: &String| old != name) {
                        return Err(SdlError::Unsupported {
                            path: ip_path,
                            line: v.line,
                            why: "one exposed port can use one IP endpoint",
                        });
                    }
                    ip = Some(name.to_owned());
                    named = true;
                }
            }
            if !named {
                let keys: Vec<&str> = t.iter().map(|(k, _)| k.text.as_str()).collect();
                return Err(bad(
                    &p,
                    item.line,
                    &keys.join(", "),
                    "a to entry needs service, global: true or ip (a typo of service?)",
                ));
            }
        }
        let accept_path = child(path, "accept");
        let mut accept = strings(opt_seq(get(e, "accept"), &accept_path)?, &accept_path)?;
        for (i, h) in accept.iter().enumerate() {
            if h.is_empty() || h.chars().any(|c| c.is_whitespace() || c == '/') {
                return Err(bad(
                    &format!("{accept_path}[{i}]"),
                    n.line,
                    h,
                    "a host name has no spaces or slashes",
                ));
            }
        }
        accept.sort();
        accept.dedup();
        let http_options = self.http_options(e, path)?;
        let mut names = to_services;
        names.sort();
        names.dedup();
        Ok(Expose {
            line: n.line,
            port,
            external_port,
            proto,
            global,
            to_services: names,
            ip,
            accept,
            http_options,
        })
    }

    fn http_options(&mut self, e: &Entries, path: &str) -> Result<Option<HttpOptions>, SdlError> {
        let p = child(path, "http_options");
        let Some(m) = opt_map(get(e, "http_options"), &p)? else {
            return Ok(None);
        };
        const NUMBERS: [&str; 5] =
            ["max_body_size", "read_timeout", "send_timeout", "next_tries", "next_timeout"];
        let mut known: Vec<&str> = NUMBERS.to_vec();
        known.push("next_cases");
        self.unknown_keys(m, &p, &known);
        let mut o = HttpOptions::default();
        for key in NUMBERS {
            let Some((_, v)) = get(m, key) else { continue };
            if v.is_null() {
                continue;
            }
            let x = Some(uint(v, &child(&p, key), "give a whole number")?);
            match key {
                "max_body_size" => o.max_body_size = x,
                "read_timeout" => o.read_timeout = x,
                "send_timeout" => o.send_timeout = x,
                "next_tries" => o.next_tries = x,
                _ => o.next_timeout = x,
            }
        }
        let cases_path = child(&p, "next_cases");
        let cases = opt_seq(get(m, "next_cases"), &cases_path)?;
        o.next_cases = strings(cases, &cases_path)?;
        const CASES: [&str; 10] =
            ["off", "error", "timeout", "500", "502", "503", "504", "403", "404", "429"];
        for (i, (c, node)) in o.next_cases.iter().zip(cases).enumerate() {
            if !CASES.contains(&c.as_str()) {
                return Err(bad(
                    &format!("{cases_path}[{i}]"),
                    node.line,
                    c,
                    format!("next_cases are among {}", CASES.join(", ")),
                ));
            }
        }
        Ok(Some(o))
    }

    fn compute(
        &mut self,
        name: &str,
        line: usize,
        n: &Node,
        path: &str,
    ) -> Result<ComputeProfile, SdlError> {
        let Kind::Map(e) = &n.kind else {
            return Err(wrong(n, path, "a map with resources"));
        };
        self.unknown_keys(e, path, &["resources"]);
        let rpath = child(path, "resources");
        let (r, rline) =
            req_map(get(e, "resources"), &rpath, line, "give cpu, memory and storage")?;
        self.unknown_keys(r, &rpath, &["cpu", "memory", "storage", "gpu"]);

        let cpu_path = child(&rpath, "cpu");
        let (cpu, cpu_line) = req_map(get(r, "cpu"), &cpu_path, rline, "give cpu: {units: 1}")?;
        self.unknown_keys(cpu, &cpu_path, &["units", "attributes"]);
        let units_path = child(&cpu_path, "units");
        let (units, units_line) =
            req_text(cpu, "units", &cpu_path, cpu_line, "give the CPU units, like 0.5 or 2")?;
        let cpu_millis =
            units::cpu_millis(units).map_err(|why| bad(&units_path, units_line, units, why))?;
        if cpu_millis == 0 {
            return Err(bad(
                &units_path,
                units_line,
                units,
                "at least 1 millicore (0.001 CPU) is needed",
            ));
        }

        let mem_path = child(&rpath, "memory");
        let (mem, mem_line) =
            req_map(get(r, "memory"), &mem_path, rline, "give memory: {size: 512Mi}")?;
        self.unknown_keys(mem, &mem_path, &["size", "attributes"]);
        let size_path = child(&mem_path, "size");
        let size_node = get(mem, "size")
            .map(|(_, v)| v)
            .ok_or_else(|| missing(&size_path, mem_line, "give the memory size, like 512Mi"))?;
        let memory_bytes = self.size(size_node, &size_path, "give the memory size, like 512Mi")?;
        if memory_bytes == 0 {
            return Err(bad(&size_path, size_node.line, "0", "memory must be more than 0"));
        }

        let storage_path = child(&rpath, "storage");
        let storage_items: Vec<(String, &Node)> = match get(r, "storage") {
            None => return Err(missing(&storage_path, rline, "give storage: {size: 1Gi}")),
            Some((k, v)) if v.is_null() => {
                return Err(missing(&storage_path, k.line, "give storage: {size: 1Gi}"))
            }
            Some((_, v @ Node { kind: Kind::Map(_), .. })) => vec![(storage_path.clone(), v)],
            Some((_, Node { kind: Kind::Seq(items), .. })) => {
                items.iter().enumerate().map(|(i, v)| (format!("{storage_path}[{i}]"), v)).collect()
            }
            Some((_, v)) => {
                return Err(wrong(v, &storage_path, "a map or a list of maps with size"))
            }
        };
        let mut storage: Vec<Volume> = Vec::new();
        for (p, v) in storage_items {
            let vol = self.volume(v, &p)?;
            if storage.iter().any(|x| x.name == vol.name) {
                return Err(bad(
                    &child(&p, "name"),
                    vol.line,
                    &vol.name,
                    "two volumes of one profile have this name",
                ));
            }
            storage.push(vol);
        }

        let gpu = match opt_map(get(r, "gpu"), &child(&rpath, "gpu"))? {
            None => None,
            Some(g) => {
                let gline = get(r, "gpu").map_or(rline, |(k, _)| k.line);
                self.gpu(g, gline, &child(&rpath, "gpu"))?
            }
        };
        Ok(ComputeProfile { name: name.to_owned(), line, cpu_millis, memory_bytes, storage, gpu })
    }

    fn volume(&mut self, n: &Node, path: &str) -> Result<Volume, SdlError> {
        let Kind::Map(e) = &n.kind else {
            return Err(wrong(n, path, "a map with size (and name, attributes)"));
        };
        self.unknown_keys(e, path, &["name", "size", "attributes"]);
        let name = match get(e, "name") {
            None => "default".to_owned(),
            Some((_, v)) if v.is_null() => "default".to_owned(),
            Some((k, v)) => {
                let s = text(v, &child(path, "name"), "name the volume")?;
                check_name(&child(path, "name"), k.line, s)?;
                s.to_owned()
            }
        };
        let size_path = child(path, "size");
        let size_node = get(e, "size")
            .map(|(_, v)| v)
            .ok_or_else(|| missing(&size_path, n.line, "give the volume size, like 1Gi"))?;
        let bytes = self.size(size_node, &size_path, "give the volume size, like 1Gi")?;
        if bytes == 0 {
            return Err(bad(&size_path, size_node.line, "0", "a volume must be larger than 0"));
        }
        let apath = child(path, "attributes");
        let mut persistent = false;
        let mut class: Option<(String, usize)> = None;
        if let Some(a) = opt_map(get(e, "attributes"), &apath)? {
            self.unknown_keys(a, &apath, &["persistent", "class"]);
            if let Some((_, v)) = get(a, "persistent") {
                if !v.is_null() {
                    persistent = boolean(v, &child(&apath, "persistent"))?;
                }
            }
            if let Some((_, v)) = get(a, "class") {
                if !v.is_null() {
                    let c = text(v, &child(&apath, "class"), "name the storage class")?;
                    check_name(&child(&apath, "class"), v.line, c)?;
                    class = Some((c.to_owned(), v.line));
                }
            }
        }
        let (kind, class) = match class {
            Some((c, line)) if c == "ram" => {
                if persistent {
                    return Err(bad(
                        &child(&apath, "persistent"),
                        line,
                        "true",
                        "a ram volume cannot be persistent",
                    ));
                }
                (VolumeKind::Ram, None)
            }
            Some((c, _)) if persistent => (VolumeKind::Persistent, Some(c)),
            Some((c, line)) => {
                self.warn(
                    &child(&apath, "class"),
                    line,
                    format!("class {c} is ignored: the volume is not persistent"),
                );
                (VolumeKind::Ephemeral, None)
            }
            None if persistent => {
                self.warn(
                    &apath,
                    n.line,
                    "persistent volume without class: asks for class \"default\"",
                );
                (VolumeKind::Persistent, Some("default".to_owned()))
            }
            None => (VolumeKind::Ephemeral, None),
        };
        Ok(Volume { line: n.line, name, bytes, kind, class })
    }

    fn gpu(&mut self, g: &Entries, line: usize, path: &str) -> Result<Option<Gpu>, SdlError> {
        self.unknown_keys(g, path, &["units", "attributes"]);
        let units_path = child(path, "units");
        let units = match get(g, "units") {
            None => return Err(missing(&units_path, line, "give the number of GPUs per replica")),
            Some((_, v)) => uint(v, &units_path, "give the number of GPUs per replica")?,
        };
        let units_line = get(g, "units").map_or(line, |(k, _)| k.line);
        let apath = child(path, "attributes");
        let attrs = opt_map(get(g, "attributes"), &apath)?;
        if units == 0 {
            if attrs.is_some() {
                self.warn(&apath, line, "GPU attributes are ignored with units: 0");
            }
            return Ok(None);
        }
        let units = u32::try_from(units).ok().filter(|u| *u <= 64).ok_or_else(|| {
            bad(&units_path, units_line, &units.to_string(), "at most 64 GPUs per replica")
        })?;
        let attrs = attrs.ok_or_else(|| {
            missing(&apath, line, "say which vendor: attributes: {vendor: {nvidia: }}")
        })?;
        self.unknown_keys(attrs, &apath, &["vendor"]);
        let vpath = child(&apath, "vendor");
        let attrs_line = get(g, "attributes").map_or(line, |(k, _)| k.line);
        let (vendors, vline) = req_map(
            get(attrs, "vendor"),
            &vpath,
            attrs_line,
            "say which vendor: vendor: {nvidia: }",
        )?;
        let [(vk, models_node)] = vendors else {
            return Err(SdlError::Unsupported {
                path: vpath,
                line: vline,
                why: "one replica's GPUs come from one vendor; give exactly one",
            });
        };
        let vendor = vk.text.to_ascii_lowercase();
        if vendor != "nvidia" && vendor != "amd" {
            return Err(bad(
                &child(&vpath, &vk.text),
                vk.line,
                &vk.text,
                "the GPU vendor is nvidia or amd",
            ));
        }
        let mpath = child(&vpath, &vk.text);
        let items: &[Node] = match &models_node.kind {
            _ if models_node.is_null() => &[],
            Kind::Seq(items) => items,
            _ => {
                return Err(wrong(
                    models_node,
                    &mpath,
                    "a list of models (or nothing for any model)",
                ))
            }
        };
        let mut models: Vec<GpuModelSpec> = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let p = format!("{mpath}[{i}]");
            let Kind::Map(m) = &item.kind else {
                return Err(wrong(item, &p, "a map with model (and ram, interface)"));
            };
            self.unknown_keys(m, &p, &["model", "ram", "interface"]);
            let (model, model_line) =
                req_text(m, "model", &p, item.line, "name the GPU model, like a100")?;
            if let Some((_, Node { kind: Kind::Scalar { plain: true, .. }, .. })) = get(m, "model")
            {
                if model.bytes().all(|b| b.is_ascii_digit()) {
                    self.warn(
                        &child(&p, "model"),
                        model_line,
                        format!("model written as a number; read as the name {model:?} (quote it)"),
                    );
                }
            }
            let name = model.trim().to_ascii_lowercase();
            check_name(&child(&p, "model"), model_line, &name)?;
            let min_vram_bytes = match get(m, "ram") {
                Some((_, v)) if !v.is_null() => {
                    self.size(v, &child(&p, "ram"), "give the GPU memory, like 80Gi")?
                }
                _ => 0,
            };
            let interface = match get(m, "interface") {
                Some((_, v)) if !v.is_null() => {
                    let ip = child(&p, "interface");
                    let t = text(v, &ip, "write pcie or sxm")?;
                    match t.to_ascii_lowercase().as_str() {
                        "pcie" => Some(GpuInterface::Pcie),
                        "sxm" => Some(GpuInterface::Sxm),
                        _ => return Err(bad(&ip, v.line, t, "the GPU interface is pcie or sxm")),
                    }
                }
                _ => None,
            };
            let spec = GpuModelSpec { name, min_vram_bytes, interface };
            match models.iter().find(|x| x.name == spec.name) {
                Some(x) if *x == spec => {}
                Some(_) => {
                    return Err(SdlError::Unsupported {
                        path: p,
                        line: item.line,
                        why: "one model listed twice with different ram or interface",
                    })
                }
                None => models.push(spec),
            }
        }
        models.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(Some(Gpu { units, vendor, models }))
    }

    fn placement(
        &mut self,
        name: &str,
        line: usize,
        n: &Node,
        path: &str,
    ) -> Result<PlacementProfile, SdlError> {
        let Kind::Map(e) = &n.kind else {
            return Err(wrong(n, path, "a map with pricing (and attributes, signedBy)"));
        };
        self.unknown_keys(e, path, &["attributes", "signedBy", "pricing"]);
        let mut attributes = Vec::new();
        let apath = child(path, "attributes");
        for (k, v) in opt_map(get(e, "attributes"), &apath)?.unwrap_or(&[]) {
            let p = child(&apath, &k.text);
            let value = text(v, &p, "give the attribute's value")?;
            let key_ok = !k.text.is_empty()
                && k.text.len() <= 64
                && k.text.chars().all(|c| c.is_ascii_alphanumeric() || "._:/-".contains(c));
            if !key_ok {
                return Err(bad(
                    &p,
                    k.line,
                    &k.text,
                    "an attribute key is 1-64 letters, digits or . _ : / -",
                ));
            }
            if value.chars().count() > 128 || value.chars().any(char::is_control) {
                return Err(bad(
                    &p,
                    v.line,
                    value,
                    "an attribute value is at most 128 printable characters",
                ));
            }
            attributes.push(Attribute::new(k.text.clone(), value));
        }
        attributes.sort();
        if attributes.len() > crate::types::MAX_ATTRIBUTES {
            return Err(bad(
                &apath,
                line,
                "",
                format!("at most {} attributes", crate::types::MAX_ATTRIBUTES),
            ));
        }
        let spath = child(path, "signedBy");
        let mut any_of = Vec::new();
        let mut all_of = Vec::new();
        if let Some(s) = opt_map(get(e, "signedBy"), &spath)? {
            self.unknown_keys(s, &spath, &["anyOf", "allOf"]);
            any_of = strings(
                opt_seq(get(s, "anyOf"), &child(&spath, "anyOf"))?,
                &child(&spath, "anyOf"),
            )?;
            all_of = strings(
                opt_seq(get(s, "allOf"), &child(&spath, "allOf"))?,
                &child(&spath, "allOf"),
            )?;
            if !any_of.is_empty() || !all_of.is_empty() {
                let sline = get(e, "signedBy").map_or(line, |(k, _)| k.line);
                self.warn(&spath, sline, "auditor signatures are not enforced by leasemesh: any provider with the attributes may bid");
            }
        }
        let ppath = child(path, "pricing");
        let (pricing_map, pricing_line) =
            req_map(get(e, "pricing"), &ppath, line, "give a price per compute profile")?;
        let mut pricing = Vec::new();
        for (k, v) in pricing_map {
            let p = child(&ppath, &k.text);
            let Kind::Map(m) = &v.kind else {
                return Err(wrong(v, &p, "a map with denom and amount"));
            };
            self.unknown_keys(m, &p, &["denom", "amount"]);
            let (denom, dline) = req_text(m, "denom", &p, k.line, "give the denom, like uakt")?;
            let denom = denom.trim();
            if crate::validate::coin(&child(&p, "denom"), &Coin::new(denom, 0)).is_err() {
                return Err(bad(
                    &child(&p, "denom"),
                    dline,
                    denom,
                    "a denom is 3-128 characters, a letter first, then letters, digits or /:._-",
                ));
            }
            let (amount, aline) =
                req_text(m, "amount", &p, k.line, "give the amount per block, like 1000")?;
            let dec = Decimal::parse(amount.trim()).ok_or_else(|| {
                bad(
                    &child(&p, "amount"),
                    aline,
                    amount,
                    "an amount is a non-negative number like 1000 or 0.5",
                )
            })?;
            pricing.push(Price {
                profile: k.text.clone(),
                line: k.line,
                denom: denom.to_owned(),
                amount: dec,
            });
        }
        pricing.sort_by(|a, b| a.profile.cmp(&b.profile));
        Ok(PlacementProfile {
            name: name.to_owned(),
            line,
            attributes,
            signed_by_any_of: any_of,
            signed_by_all_of: all_of,
            pricing,
            pricing_line,
        })
    }

    fn deployment_entry(
        &mut self,
        service: &str,
        pk: &Key,
        pv: &Node,
        path: &str,
    ) -> Result<DeploymentEntry, SdlError> {
        let Kind::Map(e) = &pv.kind else {
            return Err(wrong(pv, path, "a map with profile and count"));
        };
        self.unknown_keys(e, path, &["profile", "count"]);
        let (profile, _) = req_text(e, "profile", path, pk.line, "name the compute profile")?;
        let cpath = child(path, "count");
        let count = match get(e, "count") {
            None => return Err(missing(&cpath, pk.line, "give the number of replicas")),
            Some((_, v)) => {
                let c = uint(v, &cpath, "give the number of replicas")?;
                match u32::try_from(c) {
                    Ok(c) if (1..=MAX_REPLICAS).contains(&c) => c,
                    _ => {
                        return Err(bad(
                            &cpath,
                            v.line,
                            &c.to_string(),
                            format!("count is 1 to {MAX_REPLICAS}"),
                        ))
                    }
                }
            }
        };
        Ok(DeploymentEntry {
            service: service.to_owned(),
            placement: pk.text.clone(),
            profile: profile.to_owned(),
            count,
            line: pk.line,
        })
    }

    /// Checks references; returns the `to: service` entries that name no service, as
    /// (service, expose index, target), for the caller to drop.
    fn cross_check(&mut self, sdl: &Sdl) -> Result<Vec<(String, usize, String)>, SdlError> {
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

pub(crate) fn read(text: &str) -> Result<Sdl, SdlError> {
    let Some(root) = yaml::load(text)? else {
        return Err(SdlError::Missing {
            path: "version".into(),
            line: 1,
            hint: "the file is empty",
        });
    };
    Reader { warnings: Vec::new() }.read(&root)
}
