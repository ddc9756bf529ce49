#!/usr/bin/env bash
# Builds a container image of leasemesh-node locally, with no registry pull: FROM scratch with
# the binary, the shared libraries it links (read with ldd, copied at their host paths) and a
# minimal /etc (a non-root user, nsswitch). Usage:
#   scripts/build-image.sh [TAG]              # builds target/release/leasemesh-node first
#   LEASEMESH_NODE_BIN=path scripts/build-image.sh [TAG]   # packs that binary as it is
# TAG defaults to leasemesh-node:<workspace version>. See the README ("Container image") for
# the docker run flags.
set -euo pipefail
cd "$(dirname "$0")/.."

version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
tag=${1:-leasemesh-node:${version}}
bin=${LEASEMESH_NODE_BIN:-}
if [ -z "$bin" ]; then
  cargo build --release -p leasemesh-node --bin leasemesh-node
  bin="${CARGO_TARGET_DIR:-target}/release/leasemesh-node"
fi
[ -x "$bin" ] || { echo "no executable at $bin" >&2; exit 1; }

ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
mkdir -p "$ctx/rootfs/usr/local/bin" "$ctx/rootfs/etc" "$ctx/rootfs/tmp" "$ctx/data"
cp "$bin" "$ctx/rootfs/usr/local/bin/leasemesh-node"
# Every library the binary links, the dynamic loader included (none for a static binary).
if ldd "$bin" >/dev/null 2>&1; then
  ldd "$bin" | grep -o '/[^ ]*' | while read -r lib; do
    mkdir -p "$ctx/rootfs$(dirname "$lib")"
    cp -L "$lib" "$ctx/rootfs$lib"
  done
fi
echo 'leasemesh:x:10001:10001:leasemesh:/data:/nonexistent' > "$ctx/rootfs/etc/passwd"
echo 'leasemesh:x:10001:' > "$ctx/rootfs/etc/group"
echo 'hosts: files dns' > "$ctx/rootfs/etc/nsswitch.conf"
cat > "$ctx/Dockerfile" <<'DOCKERFILE'
FROM scratch
COPY rootfs/ /
COPY --chown=10001:10001 data /data
USER 10001:10001
VOLUME /data
# p2p (TCP and QUIC) and the HTTP API (JSON, /metrics).
EXPOSE 4001/tcp 4001/udp 8080/tcp
ENTRYPOINT ["/usr/local/bin/leasemesh-node"]
CMD ["run", "--home", "/data", "--log-format", "json"]
DOCKERFILE
chmod 1777 "$ctx/rootfs/tmp"
docker build --pull=false -t "$tag" "$ctx" >/dev/null
docker run --rm "$tag" --version
echo "built $tag ($(docker image inspect -f '{{.Size}}' "$tag") bytes)"
