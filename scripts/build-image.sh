#!/usr/bin/env bash
# Build the ospool-ep image with podman on a host without a container registry
# (SPEC §10): host packages, a debootstrapped Debian base, then the Dockerfile
# on top of it.
#
# Usage: scripts/build-image.sh [extra podman build arguments...]
# Environment:
#   IMAGE            tag to build (default localhost/ospool-ep:dev)
#   DEBIAN_SUITE     the base suite, HTCondor's too (default forky: HTCondor 25;
#                    trixie: Debian stable, HTCondor 23.9)
#   APPTAINER_SUITE  where apptainer comes from; empty: no Apptainer
#                    (default: sid for forky and sid, none for trixie, which has none)
#   BASE_IMAGE       base to build from (default localhost/debian-<suite>-base:latest,
#                    made by scripts/build-base-image.sh when missing)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
image="${IMAGE:-localhost/ospool-ep:dev}"
suite="${DEBIAN_SUITE:-forky}"
case "$suite" in
    trixie | stable) default_apptainer="" ;;
    *) default_apptainer=sid ;;
esac
apptainer_suite="${APPTAINER_SUITE-$default_apptainer}"
base="${BASE_IMAGE:-localhost/debian-$suite-base:latest}"

log() { printf 'build-image: %s\n' "$*" >&2; }
elapsed() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'; }

# True when the mirror's Release file for suite $1 is past its Valid-Until.
expired() {
    local until
    until="$(curl -fsS --max-time 30 "$mirror/dists/$1/InRelease" 2>/dev/null |
        sed -n 's/^Valid-Until: //p' | head -n1)" || return 1
    [[ -n "$until" ]] && (($(date -d "$until" +%s) < $(date +%s)))
}

eval "$("$here/setup-host.sh")"
DEBIAN_SUITE="$suite" BASE_IMAGE="$base" "$here/build-base-image.sh"

# A stale mirror (this project's serves an expired sid) is allowed for the
# affected suites of this one build, loudly; a fresh mirror needs nothing.
expired_suites=""
mirror="$("$here/build-base-image.sh" --print-mirror)"
for s in $(printf '%s\n' "$suite" "$apptainer_suite" | sort -u); do
    if expired "$s"; then
        log "WARNING: $mirror's Release file for $s is past its Valid-Until; this build accepts it"
        expired_suites+="$s "
    fi
done

version="$(sed -n 's/^__version__ = "\(.*\)"$/\1/p' "$repo/entrypoint/ospool_ep/__init__.py")"
source_url="$(git -C "$repo" remote get-url origin 2>/dev/null || true)"

start=$EPOCHREALTIME
# --format docker: the OCI format has no HEALTHCHECK (buildah drops it).
podman build \
    --format docker \
    --build-arg BASE_IMAGE="$base" \
    --build-arg DEBIAN_SUITE="$suite" \
    --build-arg APPTAINER_SUITE="$apptainer_suite" \
    --build-arg APT_EXPIRED_SUITES="${expired_suites% }" \
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
log "built $image ($suite${apptainer_suite:+, apptainer from $apptainer_suite}) in $(elapsed "$start")s, $((size / 1000000)) MB"
