//! Shared by the provider tests that need the real Docker daemon: the tiny test image, built
//! locally through bollard from node/testdata/busybox-httpd plus the host's static busybox.

use anyhow::{bail, Context};
use bollard::query_parameters::BuildImageOptionsBuilder;
use futures::StreamExt;
use leasemesh_node::provider::runtime::DockerRuntime;
use tokio::sync::OnceCell;

pub const IMAGE: &str = "leasemesh-test/busybox-httpd:1";

pub static IMAGE_BUILT: OnceCell<()> = OnceCell::const_new();

pub fn context_tar() -> anyhow::Result<Vec<u8>> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/busybox-httpd");
    let busybox = std::fs::read("/bin/busybox").context(
        "/bin/busybox is missing: install Debian's busybox-static (scripts/install-deps.sh)",
    )?;
    let mut tar = tar::Builder::new(Vec::new());
    let mut add = |path: &str, data: &[u8], mode: u32| -> anyhow::Result<()> {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(mode);
        h.set_cksum();
        tar.append_data(&mut h, path, data)?;
        Ok(())
    };
    add("Dockerfile", &std::fs::read(dir.join("Dockerfile"))?, 0o644)?;
    add("www/index.html", &std::fs::read(dir.join("www/index.html"))?, 0o644)?;
    add("busybox", &busybox, 0o755)?;
    Ok(tar.into_inner()?)
}

/// Builds the test image once per test binary.
pub async fn ensure_image(rt: &DockerRuntime) -> anyhow::Result<()> {
    IMAGE_BUILT
        .get_or_try_init(|| async {
            let opts = BuildImageOptionsBuilder::default()
                .dockerfile("Dockerfile")
                .t(IMAGE)
                .rm(true)
                .build();
            let body = bollard::body_full(context_tar()?.into());
            let mut s = rt.docker().build_image(opts, None, Some(body));
            while let Some(item) = s.next().await {
                let info = item.context("image build")?;
                if let Some(e) = info.error_detail {
                    bail!("image build failed: {:?}", e.message);
                }
            }
            rt.docker().inspect_image(IMAGE).await.context("the built image is not there")?;
            Ok(())
        })
        .await
        .map(|_| ())
}
