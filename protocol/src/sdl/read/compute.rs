//! profiles.compute: cpu, memory, storage volumes and GPUs.

use super::*;
use crate::sdl::{ComputeProfile, Gpu, Volume, VolumeKind};
use crate::types::{GpuInterface, GpuModelSpec};
impl Reader {
    pub(super) fn compute(
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
        if let Some((k, v)) = get(cpu, "attributes") {
            if !v.is_null() {
                if let Kind::Map(a) = &v.kind {
                    self.refuse_unknown(a, &child(&cpu_path, "attributes"), &["arch"])?;
                }
                return Err(SdlError::NotYet {
                    path: child(&cpu_path, "attributes"),
                    line: k.line,
                    key: "cpu.attributes.arch",
                    why: "providers do not declare their CPU architecture, so it cannot be matched",
                });
            }
        }
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
        self.unknown_keys(mem, &mem_path, &["size"]);
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
            Some((_, v @ Node { kind: Kind::Map(m), .. })) => {
                if let Some((nk, nv)) = get(m, "name") {
                    let named = matches!(&nv.kind, Kind::Scalar { text, .. } if text != "default");
                    if named && !nv.is_null() {
                        self.warn(
                            &child(&storage_path, "name"),
                            nk.line,
                            "Akash's Go parser names a single storage map \"default\" whatever its name:, so Akash's CLI would refuse a file that mounts it by this name; leasemesh reads the name (write storage as a list to be portable)",
                        );
                    }
                }
                vec![(storage_path.clone(), v)]
            }
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

    pub(super) fn volume(&mut self, n: &Node, path: &str) -> Result<Volume, SdlError> {
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
            self.refuse_unknown(a, &apath, &["persistent", "class"])?;
            if let Some((_, v)) = get(a, "persistent") {
                if !v.is_null() {
                    persistent = boolean(v, &child(&apath, "persistent"))?;
                }
            }
            if let Some((_, v)) = get(a, "class") {
                if !v.is_null() {
                    let c = text(v, &child(&apath, "class"), "name the storage class")?;
                    if !["default", "beta1", "beta2", "beta3", "ram"].contains(&c) {
                        return Err(bad(
                            &child(&apath, "class"),
                            v.line,
                            c,
                            "Akash's storage classes are default, beta1, beta2, beta3 and ram",
                        ));
                    }
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
                return Err(bad(
                    &child(&apath, "class"),
                    line,
                    &c,
                    "Akash refuses a storage class on a volume that is not persistent (add persistent: true, or remove the class)",
                ))
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

    pub(super) fn gpu(
        &mut self,
        g: &Entries,
        line: usize,
        path: &str,
    ) -> Result<Option<Gpu>, SdlError> {
        self.refuse_unknown(g, path, &["units", "attributes"])?;
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
        self.refuse_unknown(attrs, &apath, &["vendor"])?;
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
        if vendor == "amd" {
            self.warn(
                &child(&vpath, &vk.text),
                vk.line,
                "Akash's schema knows only the nvidia vendor, so Akash's CLI would refuse this file (its Go parser would read it as any NVIDIA GPU); leasemesh matches AMD GPUs",
            );
        }
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
}
