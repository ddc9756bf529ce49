//! Shared by the provider tests that need the real Docker daemon: the tiny test image, built
//! locally through bollard from node/testdata/busybox-httpd plus the host's static busybox.

use leasemesh_node::provider::runtime::DockerRuntime;
use tokio::sync::OnceCell;

pub const IMAGE: &str = "leasemesh-test/busybox-httpd:1";

pub static IMAGE_BUILT: OnceCell<()> = OnceCell::const_new();

/// Builds the test image once per test binary.
pub async fn ensure_image(rt: &DockerRuntime) -> anyhow::Result<()> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/busybox-httpd");
    IMAGE_BUILT
        .get_or_try_init(|| leasemesh_testnet::demo::build_busybox_image(rt.docker(), IMAGE, &dir))
        .await
        .map(|_| ())
}
