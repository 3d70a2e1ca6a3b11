#!/bin/sh
# Builds the static binary and the image leforge/container-example:<version>.
# Idempotent: cargo rebuilds only what changed, and Docker's layer cache makes a rebuild of an
# unchanged binary a no-op. Needs a Docker engine, but no registry (the image is FROM scratch).
#
#   CARGO_TARGET_DIR  where to build (default: <repo>/target/container-example, kept apart
#                     from the main build so the two never wait on each other's lock)
#   IMAGE             image name (default: leforge/container-example:0.1.0)
set -eu

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
target_dir=${CARGO_TARGET_DIR:-$repo/target/container-example}
image=${IMAGE:-leforge/container-example:0.1.0}
triple=x86_64-unknown-linux-gnu

RUSTFLAGS='-C target-feature=+crt-static' \
    cargo build --release --locked --manifest-path "$here/Cargo.toml" \
    --target "$triple" --target-dir "$target_dir"

# A small build context: only the Dockerfile and the binary.
ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
cp "$here/Dockerfile" "$ctx/Dockerfile"
cp "$target_dir/$triple/release/container-example" "$ctx/container-example"
docker build --quiet --tag "$image" "$ctx" >/dev/null
echo "$image"
