//! services: image, command, args, env, expose (with http_options), params and credentials.

use super::*;
use crate::manifest::{EnvVar, PortProto};
use crate::sdl::{Credentials, Expose, HttpOptions, Service, StorageMount, TeeParam};
impl Reader {
    pub(super) fn service(
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
            &["image", "command", "args", "env", "expose", "params", "credentials", "dependencies"],
        );
        if let Some((k, _)) = get(e, "dependencies") {
            return Err(SdlError::NotYet {
                path: child(path, "dependencies"),
                line: k.line,
                key: "dependencies",
                why: "services start together; reach another service by name through expose.to.service",
            });
        }
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
        let mut tee = None;
        if let Some(params) = opt_map(get(e, "params"), &params_path)? {
            self.unknown_keys(params, &params_path, &["storage", "permissions", "tee"]);
            if let Some((k, v)) = get(params, "permissions") {
                if !v.is_null() {
                    return Err(SdlError::NotYet {
                        path: child(&params_path, "permissions"),
                        line: k.line,
                        key: "params.permissions",
                        why: "a container cannot read its deployment, logs or events from the provider",
                    });
                }
            }
            tee = tee_param(params, &params_path)?;
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
            tee,
        })
    }

    pub(super) fn port(
        &mut self,
        e: &Entries,
        key: &str,
        path: &str,
    ) -> Result<Option<u16>, SdlError> {
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

    pub(super) fn expose(&mut self, n: &Node, path: &str) -> Result<Expose, SdlError> {
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

    pub(super) fn http_options(
        &mut self,
        e: &Entries,
        path: &str,
    ) -> Result<Option<HttpOptions>, SdlError> {
        let p = child(path, "http_options");
        let Some(m) = opt_map(get(e, "http_options"), &p)? else {
            return Ok(None);
        };
        // Akash's upper limits (0 = its default); next_tries and next_timeout are unbounded.
        const NUMBERS: [(&str, u64); 6] = [
            ("max_body_size", 104_857_600),
            ("proxy_buffer_size", 1_048_576),
            ("read_timeout", 60_000),
            ("send_timeout", 60_000),
            ("next_tries", u32::MAX as u64),
            ("next_timeout", u32::MAX as u64),
        ];
        let mut known: Vec<&str> = NUMBERS.iter().map(|(k, _)| *k).collect();
        known.push("next_cases");
        self.unknown_keys(m, &p, &known);
        let mut o = HttpOptions::default();
        for (key, max) in NUMBERS {
            let Some((_, v)) = get(m, key) else { continue };
            if v.is_null() {
                continue;
            }
            let n = uint(v, &child(&p, key), "give a whole number")?;
            if n > max {
                return Err(bad(
                    &child(&p, key),
                    v.line,
                    &n.to_string(),
                    format!("Akash allows at most {max}"),
                ));
            }
            let x = Some(n);
            match key {
                "max_body_size" => o.max_body_size = x,
                "proxy_buffer_size" => o.proxy_buffer_size = x,
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
        if o.next_cases.len() > 1 && o.next_cases.iter().any(|c| c == "off") {
            return Err(bad(
                &cases_path,
                get(m, "next_cases").map_or(0, |(k, _)| k.line),
                "off",
                "with off, no other case may be given",
            ));
        }
        Ok(Some(o))
    }
}

/// `params.tee`: `cpu` or `cpu-gpu`, the values of Akash's schema.
fn tee_param(params: &Entries, params_path: &str) -> Result<Option<TeeParam>, SdlError> {
    let Some((_, v)) = get(params, "tee") else { return Ok(None) };
    let p = child(params_path, "tee");
    let kind = text(v, &p, "write tee: cpu or tee: cpu-gpu")?;
    if kind != "cpu" && kind != "cpu-gpu" {
        return Err(bad(&p, v.line, kind, "Akash's TEE types are cpu and cpu-gpu"));
    }
    Ok(Some(TeeParam { line: v.line, kind: kind.to_owned() }))
}
