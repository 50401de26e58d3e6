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
#   PYTHON           the host Python whose pip downloads the image's wheels
#                    (default python3, else .venv's when python3 has no pip)
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

# The pinned wheels the image installs beyond Debian's packages
# (scripts/image-wheels.txt; Dockerfile, build stage), fetched here on the host:
# pip inside the build cannot reach PyPI on this project's machines. Nothing is
# downloaded when .whl/ already holds a file of every pinned hash.
wheel_list="$here/image-wheels.txt"
wheel_dir="$repo/.whl"
missing_wheels() {
    comm -23 \
        <(grep -o 'sha256:[0-9a-f]*' "$wheel_list" | cut -d: -f2 | sort -u) \
        <(find "$wheel_dir" -maxdepth 1 -name '*.whl' -exec sha256sum {} + 2>/dev/null |
            cut -d' ' -f1 | sort -u)
}
fetch_wheels() {
    [[ -z "$(missing_wheels)" ]] && return 0
    local python="${PYTHON:-python3}"
    if ! "$python" -m pip --version >/dev/null 2>&1 && [[ -z "${PYTHON:-}" && -x "$repo/.venv/bin/python" ]]; then
        python="$repo/.venv/bin/python"
    fi
    log "downloading the wheels of scripts/image-wheels.txt into .whl/ ($python -m pip)"
    mkdir -p "$wheel_dir"
    # --python-version: the oldest Python of the image's variants (trixie), not the host's.
    if ! "$python" -m pip download --quiet --no-deps --only-binary=:all: --require-hashes \
        --python-version 3.13 -d "$wheel_dir" -r "$wheel_list"; then
        log "cannot download the image's wheels: this needs pip ($python -m pip) and PyPI"
        log "on this host; or put the files pinned in scripts/image-wheels.txt into $wheel_dir"
        exit 1
    fi
    if [[ -n "$(missing_wheels)" ]]; then
        log "$wheel_dir still lacks a wheel of sha256 $(missing_wheels | tr '\n' ' ')"
        exit 1
    fi
}
fetch_wheels

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
