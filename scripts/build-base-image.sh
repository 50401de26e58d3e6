#!/usr/bin/env bash
# Build a Debian base image (forky unless told otherwise) with debootstrap and
# `podman import` it.
#
# There is no container registry on these machines, so `debian:forky-slim`
# cannot be pulled (SPEC §10). This makes the equivalent from the Debian
# mirror the host's apt sources already name.
#
# Usage: scripts/build-base-image.sh [--force] [--image NAME] [--suite SUITE] [--mirror URL]
#        scripts/build-base-image.sh --print-mirror
#   --force    rebuild even when the image exists
#   --print-mirror  print the mirror it would use and exit
#   --suite    default: $DEBIAN_SUITE or forky (the image's default, Dockerfile)
#   --image    default: $BASE_IMAGE or localhost/debian-<suite>-base:latest
#   --mirror   default: $DEBIAN_MIRROR, else the first Debian archive URI in
#              the host's /etc/apt/sources.list{,.d/*}
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

image="${BASE_IMAGE:-}"
suite="${DEBIAN_SUITE:-forky}"
mirror="${DEBIAN_MIRROR:-}"
force=0
print_mirror=0

log() { printf 'build-base-image: %s\n' "$*" >&2; }
elapsed() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'; }

while (($#)); do
    case "$1" in
        --force) force=1 ;;
        --image) image="$2"; shift ;;
        --suite) suite="$2"; shift ;;
        --mirror) mirror="$2"; shift ;;
        --print-mirror) print_mirror=1 ;;
        -h | --help) sed -n '2,17p' "$0"; exit 0 ;;
        *) log "unknown argument: $1"; exit 2 ;;
    esac
    shift
done
image="${image:-localhost/debian-$suite-base:latest}"

# The host's Debian archive: deb822 `URIs:` lines or one-line `deb URI suite`
# entries, skipping debian-security (it has no plain `trixie` suite).
host_mirror() {
    local f uri
    for f in /etc/apt/sources.list.d/*.sources /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [[ -r "$f" ]] || continue
        uri="$(awk '
            /^[[:space:]]*#/ { next }
            $1 == "URIs:" { for (i = 2; i <= NF; i++) print $i; next }
            $1 == "deb" { for (i = 2; i <= NF; i++) if ($i !~ /^\[/ && $i !~ /\]$/) { print $i; break } }
        ' "$f" | grep -E '^https?://[^ ]*/debian/?$' | head -n1 || true)"
        if [[ -n "$uri" ]]; then
            printf '%s\n' "${uri%/}"
            return 0
        fi
    done
    return 1
}

if ((print_mirror)); then
    [[ -n "$mirror" ]] || mirror="$(host_mirror)" || { log "no Debian archive in /etc/apt/sources.list*"; exit 1; }
    printf '%s\n' "$mirror"
    exit 0
fi

if [[ -z "${CONTAINERS_CONF:-}" ]]; then
    eval "$("$here/setup-host.sh")"
fi

if ((!force)) && podman image exists "$image"; then
    log "$image exists (use --force to rebuild)"
    exit 0
fi

command -v debootstrap >/dev/null || { log "debootstrap missing: run scripts/setup-host.sh"; exit 1; }
[[ $(id -u) -eq 0 ]] || { log "debootstrap needs root"; exit 1; }

if [[ -z "$mirror" ]] && ! mirror="$(host_mirror)"; then
    log "no Debian archive in /etc/apt/sources.list*: pass --mirror URL or DEBIAN_MIRROR"
    exit 1
fi
tmp="$(mktemp -d "${TMPDIR:-/var/tmp}/ospool-ep-base.XXXXXX")"
cleanup() { rm -rf --one-file-system "$tmp"; }
trap cleanup EXIT

log "debootstrap --variant=minbase $suite from $mirror"
start=$EPOCHREALTIME
# Keyring: bookworm's debian-archive-keyring carries the keys that sign trixie,
# forky and sid. Its debootstrap has no script for suites newer than itself
# (forky): those are bootstrapped like sid, as debootstrap's own scripts do.
script=()
[[ -e "/usr/share/debootstrap/scripts/$suite" ]] || script=(/usr/share/debootstrap/scripts/sid)
debootstrap --variant=minbase "$suite" "$tmp/root" "$mirror" "${script[@]}" >"$tmp/debootstrap.log" 2>&1 || {
    tail -n 30 "$tmp/debootstrap.log" >&2
    cat "$tmp/root/debootstrap/debootstrap.log" >&2 2>/dev/null || true
    exit 1
}
boot_s=$(elapsed "$start")

# Slim it the way the official -slim images are: no apt lists or caches
# (the Dockerfile runs apt-get update anyway), no docs or man pages.
rm -rf "$tmp/root/var/lib/apt/lists/"* "$tmp/root/var/cache/apt/"*.bin \
    "$tmp/root/var/cache/apt/archives/"*.deb "$tmp/root/var/log/"*.log
printf 'deb %s %s main\n' "$mirror" "$suite" >"$tmp/root/etc/apt/sources.list"
# Same dpkg excludes as Debian's docker images (debuerreotype "slimify"), so
# packages installed later in the Dockerfile skip their docs/man/locale too.
cat >"$tmp/root/etc/dpkg/dpkg.cfg.d/docker-slim" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
path-exclude /usr/share/lintian/*
EOF
find "$tmp/root/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete 2>/dev/null || true
find "$tmp/root/usr/share/locale" -mindepth 1 -maxdepth 1 -not -name locale.alias -exec rm -rf {} + 2>/dev/null || true
rm -rf "$tmp/root/usr/share/man/"* "$tmp/root/usr/share/info/"*
# Without this apt keeps downloaded .debs in the image layers.
printf 'APT::Keep-Downloaded-Packages "false";\n' >"$tmp/root/etc/apt/apt.conf.d/docker-clean"

old_id="$(podman image inspect --format '{{.Id}}' "$image" 2>/dev/null || true)"
log "podman import as $image"
tar --numeric-owner -C "$tmp/root" -c . |
    podman import --quiet --change 'CMD ["/bin/bash"]' \
        --change "LABEL org.opencontainers.image.title=debian-$suite-base" \
        --change "LABEL org.opencontainers.image.source=debootstrap $mirror $suite" \
        - "$image" >/dev/null
# The replaced image, now untagged: drop it unless images built on it remain.
if [[ -n "$old_id" ]] && [[ "$old_id" != "$(podman image inspect --format '{{.Id}}' "$image")" ]]; then
    podman rmi "$old_id" >/dev/null 2>&1 || true
fi
total_s=$(elapsed "$start")
size="$(podman image inspect --format '{{.Size}}' "$image")"
log "done: $image, debootstrap ${boot_s}s, total ${total_s}s, $((size / 1000000)) MB"
