#!/usr/bin/env bash
# Build the ospool-ep image with podman on a host without a container registry
# (SPEC §10): host packages, a debootstrapped Debian trixie base, then the
# Dockerfile on top of it.
#
# Usage: scripts/build-image.sh [extra podman build arguments...]
# Environment:
#   IMAGE       tag to build (default localhost/ospool-ep:dev)
#   BASE_IMAGE  base to build from (default localhost/debian-trixie-base:latest,
#               made by scripts/build-base-image.sh when missing)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
image="${IMAGE:-localhost/ospool-ep:dev}"
base="${BASE_IMAGE:-localhost/debian-trixie-base:latest}"

log() { printf 'build-image: %s\n' "$*" >&2; }
elapsed() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'; }

eval "$("$here/setup-host.sh")"
BASE_IMAGE="$base" "$here/build-base-image.sh"

version="$(sed -n 's/^__version__ = "\(.*\)"$/\1/p' "$repo/entrypoint/ospool_ep/__init__.py")"
source_url="$(git -C "$repo" remote get-url origin 2>/dev/null || true)"

start=$EPOCHREALTIME
# --format docker: the OCI format has no HEALTHCHECK (buildah drops it).
podman build \
    --format docker \
    --build-arg BASE_IMAGE="$base" \
    --build-arg VERSION="${version:-0.0.0+unknown}" \
    --build-arg SOURCE_URL="$source_url" \
    -t "$image" \
    "$@" \
    "$repo"
# Drop the untagged images earlier builds of this Dockerfile left behind (the
# previous :dev and the build stage); tagged images and layer caches stay.
podman image prune -f --filter "label=org.opencontainers.image.title=ospool-ep" >/dev/null || true
podman image prune -f --filter "label=org.ospool-ep.stage=build" >/dev/null || true
size="$(podman image inspect --format '{{.Size}}' "$image")"
log "built $image in $(elapsed "$start")s, $((size / 1000000)) MB"
