#!/bin/sh
# Builds the static `leforge` binary and the runtime image from the root Dockerfile, in a
# small build context (the Dockerfile, the binary, docker/data): no registry is needed, and
# the gigabytes under target/ never reach the engine.
#
#   PROFILE           cargo profile: release (default) or dev
#   CARGO_TARGET_DIR  where to build (default: <repo>/target)
#   IMAGE             the tag (default: leforge:<version>)
set -eu

repo=$(cd "$(dirname "$0")/.." && pwd)
profile=${PROFILE:-release}
target_dir=${CARGO_TARGET_DIR:-$repo/target}
version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$repo/Cargo.toml" | head -n 1)
image=${IMAGE:-leforge:$version}
triple=x86_64-unknown-linux-gnu
case "$profile" in
  dev) out=debug ;;
  *) out=$profile ;;
esac

# Static: the image has no libc. Only the target's artifacts get the flag (--target), so
# build scripts and proc macros still link normally.
RUSTFLAGS='-C target-feature=+crt-static' \
    cargo build --locked --profile "$profile" --manifest-path "$repo/Cargo.toml" \
    -p leforge-server --bin leforge --target "$triple" --target-dir "$target_dir"

ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
mkdir -p "$ctx/target/$triple/release" "$ctx/docker"
cp "$repo/Dockerfile" "$ctx/Dockerfile"
cp -R "$repo/docker/data" "$ctx/docker/data"
cp "$target_dir/$triple/$out/leforge" "$ctx/target/$triple/release/leforge"
docker build --quiet --tag "$image" "$ctx" >/dev/null
echo "$image"
