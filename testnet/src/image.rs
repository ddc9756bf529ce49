//! Container images built locally through the Docker build API, with no registry and nothing
//! outside cargo: `FROM scratch` plus a binary of this workspace and the shared libraries it
//! links (read with `ldd`, copied at their host paths, the dynamic loader included).
//!
//! The demo's web image ([`build_web_image`]) is built this way from `leasemesh-demo-web`
//! (testnet/src/bin), so the demo needs only Docker and cargo.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{anyhow, bail, Context as _};
use bollard::query_parameters::BuildImageOptionsBuilder;
use bollard::Docker;
use futures::StreamExt as _;

/// The shared libraries `bin` links, the dynamic loader included, as absolute host paths (none
/// for a static binary). Reads them with `ldd`, which every glibc system has.
pub fn linked_libraries(bin: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let out = Command::new("ldd")
        .arg(bin)
        .output()
        .context("cannot run ldd (part of glibc) to list the libraries to copy")?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        // "not a dynamic executable" (a static binary): nothing to copy.
        let err = String::from_utf8_lossy(&out.stderr);
        if text.contains("not a dynamic") || err.contains("not a dynamic") {
            return Ok(Vec::new());
        }
        bail!("ldd {} failed: {}", bin.display(), err.trim());
    }
    parse_ldd(&text)
}

/// The library paths of `ldd` output: `name => /path (addr)` or `/path (addr)`; the vDSO has
/// no file and is skipped; an unresolved library is an error.
pub fn parse_ldd(text: &str) -> anyhow::Result<Vec<PathBuf>> {
    let mut libs = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if line.contains("statically linked") {
            continue;
        }
        if line.contains("=> not found") {
            bail!("a library is missing: {line}");
        }
        let path = match line.split_once("=>") {
            Some((_, rest)) => rest.split_whitespace().next(),
            None => line.split_whitespace().next(),
        };
        if let Some(p) = path.filter(|p| p.starts_with('/')) {
            libs.push(PathBuf::from(p));
        }
    }
    Ok(libs)
}

/// A tar build context.
pub struct Context {
    tar: tar::Builder<Vec<u8>>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context").finish_non_exhaustive()
    }
}

impl Default for Context {
    fn default() -> Self {
        Context { tar: tar::Builder::new(Vec::new()) }
    }
}

impl Context {
    /// Adds one regular file.
    pub fn add(&mut self, path: &str, data: &[u8], mode: u32) -> anyhow::Result<()> {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(mode);
        h.set_cksum();
        self.tar.append_data(&mut h, path, data).with_context(|| format!("tar: {path}"))?;
        Ok(())
    }

    /// Adds every file under `dir` (recursively) below `prefix`.
    pub fn add_dir(&mut self, prefix: &str, dir: &Path) -> anyhow::Result<()> {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .with_context(|| format!("cannot read {}", dir.display()))?
            .collect::<Result<_, _>>()?;
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let name = format!("{prefix}/{}", e.file_name().to_string_lossy());
            if e.file_type()?.is_dir() {
                self.add_dir(&name, &e.path())?;
            } else {
                self.add(&name, &std::fs::read(e.path())?, 0o644)?;
            }
        }
        Ok(())
    }

    /// Adds `bin` at `rootfs/<at>` and the libraries it links at `rootfs/<their host path>`
    /// (symlinks followed: the image gets the files), for `COPY rootfs/ /`.
    pub fn add_binary_rootfs(&mut self, bin: &Path, at: &str) -> anyhow::Result<()> {
        let data = std::fs::read(bin).with_context(|| format!("cannot read {}", bin.display()))?;
        self.add(&format!("rootfs/{}", at.trim_start_matches('/')), &data, 0o755)?;
        for lib in linked_libraries(bin)? {
            let data =
                std::fs::read(&lib).with_context(|| format!("cannot read {}", lib.display()))?;
            let rel = lib.to_string_lossy().trim_start_matches('/').to_owned();
            self.add(&format!("rootfs/{rel}"), &data, 0o755)?;
        }
        Ok(())
    }

    pub fn into_bytes(self) -> anyhow::Result<Vec<u8>> {
        Ok(self.tar.into_inner()?)
    }
}

/// Builds `tag` from a tar context holding a `Dockerfile`, through the Docker build API.
pub async fn build(docker: &Docker, tag: &str, context: Context) -> anyhow::Result<()> {
    let opts = BuildImageOptionsBuilder::default().dockerfile("Dockerfile").t(tag).rm(true).build();
    let body = bollard::body_full(context.into_bytes()?.into());
    let mut s = docker.build_image(opts, None, Some(body));
    while let Some(item) = s.next().await {
        let info = item.context("image build")?;
        if let Some(e) = info.error_detail {
            bail!("image build of {tag} failed: {:?}", e.message);
        }
    }
    docker
        .inspect_image(tag)
        .await
        .with_context(|| format!("the built image {tag} is not there"))?;
    Ok(())
}

/// Builds the demo's web image `tag` from `dir` (its `Dockerfile` and `www/`) and the
/// `leasemesh-demo-web` binary `web_bin` with its libraries.
pub async fn build_web_image(
    docker: &Docker,
    tag: &str,
    dir: &Path,
    web_bin: &Path,
) -> anyhow::Result<()> {
    let mut ctx = Context::default();
    ctx.add("Dockerfile", &std::fs::read(dir.join("Dockerfile"))?, 0o644)?;
    ctx.add_dir("www", &dir.join("www"))?;
    ctx.add_binary_rootfs(web_bin, "bin/leasemesh-demo-web")?;
    build(docker, tag, ctx).await.map_err(|e| anyhow!("{e:#} (context {})", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ldd_output_gives_the_library_files() {
        let out = "\tlinux-vdso.so.1 (0x00007ffd)\n\tlibgcc_s.so.1 => /lib/x86_64-linux-gnu/libgcc_s.so.1 (0x00007f1)\n\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f2)\n\t/lib64/ld-linux-x86-64.so.2 (0x00007f3)\n";
        let libs = parse_ldd(out).unwrap();
        assert_eq!(
            libs,
            vec![
                PathBuf::from("/lib/x86_64-linux-gnu/libgcc_s.so.1"),
                PathBuf::from("/lib/x86_64-linux-gnu/libc.so.6"),
                PathBuf::from("/lib64/ld-linux-x86-64.so.2"),
            ]
        );
        assert!(parse_ldd("\tstatically linked\n").unwrap().is_empty());
        assert!(parse_ldd("\tlibfoo.so.1 => not found\n").is_err());
    }
}
