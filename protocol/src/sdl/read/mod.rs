//! From the YAML tree to a checked [`Sdl`]: shapes, values, and the references between
//! services, profiles, placements, volumes and endpoints.
//!
//! Validity follows Akash's Go parser (chain-sdk `go/sdl`) and its input schema. Keys of that
//! schema that leasemesh cannot honour yet are refused ([`SdlError::NotYet`]); an unknown
//! top-level key is refused as Akash's parser refuses it. Deeper unknown keys are ignored as
//! Akash's decoder ignores them, with a warning (docker-compose keys get one that says what to
//! write instead). Where leasemesh reads more than Akash, the warning says Akash's CLI would
//! refuse the file.
//!
//! One file per SDL section: `services`, `compute`, `placement` (with `deployment`), and `refs`
//! for the checks between sections.

mod compute;
mod placement;
mod refs;
mod services;

use super::error::{SdlError, SdlWarning};
use super::units::{self, UnitSpelling};
use super::yaml::{self, Key, Kind, Node};
use super::Sdl;

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

/// Akash's endpoint names (its schema's `^[a-z]+[-_0-9a-z]+$`), within the protocol's 64.
fn endpoint_name_ok(s: &str) -> bool {
    let letters = s.bytes().take_while(u8::is_ascii_lowercase).count();
    letters >= 1
        && s.len() >= 2
        && s.len() <= 64
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// `reclamation: {min_window: 24h}`: checked as Akash checks it (its schema's
/// `^[1-9][0-9]*(s|m|h)$`, so never zero), then refused: leasemesh providers declare no
/// reclamation window, so the minimum could not be honoured.
fn reclamation(k: &Key, v: &Node) -> SdlError {
    let Kind::Map(e) = &v.kind else {
        return wrong(v, "reclamation", "a map with min_window");
    };
    if let Some((other, _)) = e.iter().find(|(x, _)| x.text != "min_window") {
        return bad(
            &child("reclamation", &other.text),
            other.line,
            &other.text,
            "reclamation has only min_window",
        );
    }
    let (w, line) = match req_text(e, "min_window", "reclamation", k.line, "write min_window: 24h")
    {
        Ok(x) => x,
        Err(err) => return err,
    };
    let digits = w.trim_end_matches(['s', 'm', 'h']);
    let well_formed = w.len() == digits.len() + 1
        && !digits.is_empty()
        && !digits.starts_with('0')
        && digits.bytes().all(|b| b.is_ascii_digit());
    if !well_formed {
        return bad(
            "reclamation.min_window",
            line,
            w,
            "Akash needs a whole number above 0 followed by s, m or h, like 24h",
        );
    }
    SdlError::NotYet {
        path: "reclamation".into(),
        line: k.line,
        key: "reclamation",
        why: "leasemesh providers declare no reclamation window, so a minimum window cannot be honoured",
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

    /// Refuses any key not in `known`, where Akash's parser refuses unknown keys too.
    fn refuse_unknown(
        &self,
        entries: &Entries,
        path: &str,
        known: &[&str],
    ) -> Result<(), SdlError> {
        match entries.iter().find(|(k, _)| !known.contains(&k.text.as_str())) {
            None => Ok(()),
            Some((k, _)) => Err(bad(
                &child(path, &k.text),
                k.line,
                &k.text,
                format!("Akash's parser refuses unknown keys here (known: {})", known.join(", ")),
            )),
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
                    "size unit in {t:?} is not one Akash's Go parser accepts (k Ki M Mi G Gi T Ti), so Akash's CLI would refuse this file; read as {bytes} bytes like Akash Console does ('i' = powers of 1024, otherwise 1000)"
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
        self.top_level_keys(top)?;
        let version = self.version(top)?;
        let endpoint_lines = self.endpoints(top)?;
        let endpoints = endpoint_lines.iter().map(|(n, _)| n.clone()).collect();

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
            endpoint_lines,
            warnings: Vec::new(),
        };
        self.akash_checks(&sdl)?;
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

    /// Akash's parser refuses a top-level key it does not know ("sdl: unexpected field").
    fn top_level_keys(&mut self, top: &Entries) -> Result<(), SdlError> {
        for (k, v) in top {
            match k.text.as_str() {
                "version" | "services" | "profiles" | "deployment" | "endpoints" => {}
                "reclamation" => return Err(reclamation(k, v)),
                "include" => {
                    return Err(SdlError::NotYet {
                        path: k.text.clone(),
                        line: k.line,
                        key: "include",
                        why: "leasemesh reads one self-contained file",
                    })
                }
                other => {
                    return Err(bad(
                        other,
                        k.line,
                        other,
                        "Akash's parser refuses an unknown top-level key (the keys are version, services, profiles, deployment, endpoints, reclamation, include)",
                    ))
                }
            }
        }
        Ok(())
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

    fn endpoints(&mut self, top: &Entries) -> Result<Vec<(String, usize)>, SdlError> {
        let Some(map) = opt_map(get(top, "endpoints"), "endpoints")? else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for (k, v) in map {
            let path = child("endpoints", &k.text);
            if !endpoint_name_ok(&k.text) {
                return Err(bad(
                    &path,
                    k.line,
                    &k.text,
                    "Akash refuses this endpoint name: lower-case letters first, then lower-case letters, digits, '-' or '_' (at least 2 characters)",
                ));
            }
            let Kind::Map(e) = &v.kind else {
                return Err(wrong(v, &path, "a map with kind: ip"));
            };
            self.unknown_keys(e, &path, &["kind"]);
            let (kind, line) = req_text(e, "kind", &path, k.line, "write kind: ip")?;
            if kind != "ip" {
                return Err(bad(&child(&path, "kind"), line, kind, "the only endpoint kind is ip"));
            }
            out.push((k.text.clone(), k.line));
        }
        out.sort();
        Ok(out)
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
