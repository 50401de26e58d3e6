#!/usr/bin/env bash
# Install what the container tests need on a Debian 12 (bookworm) host, and
# write a project-local containers.conf instead of editing /etc.
#
# Idempotent and non-interactive (CI=true, no stdin): when every package is
# already installed and the config file is current, it only prints the export
# line and exits (well under a second).
#
# Usage:  eval "$(scripts/setup-host.sh)"   # sets CONTAINERS_CONF in this shell
#         scripts/setup-host.sh --print-conf # only print the config path
#
# Environment:
#   OSPOOL_EP_WORK   where project-local state goes (default: <repo>/.work)
#
# Why each package (see shared/FACTS.md, "Containers on these machines"):
#   podman        the engine (no Docker engine on these machines)
#   runc          crun, podman's default runtime, fails on this host's hybrid
#                 cgroup layout ("cgroups in hybrid mode not supported")
#   conmon        podman's container monitor (a Depends, listed for clarity)
#   netavark,     bookworm's podman 4.3 network backend; aardvark-dns gives
#   aardvark-dns  containers on a `podman network create` network each other's
#                 names (the pilot finds the central manager by name)
#   iptables      netavark 1.4 programs the bridge's NAT/forwarding with it
#   uidmap        newuidmap/newgidmap (podman Recommends; rootless use)
#   slirp4netns   podman Recommends; rootless networking
#   debootstrap   builds the Debian trixie base image: no registry to pull from
#   the linter    shellcheck: the tests lint the shell scripts we ship
#   rpm, rpmlint, the RPM tests build and lint the package (make rpm) and
#   rpm2cpio, cpio  unpack it to check its files and units
#   squashfuse,   the CVMFS test mounts a real FUSE filesystem (a squashfs
#   squashfs-tools, image with cvmfs's xattrs) and unmounts it
#   attr, fuse3
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
work="${OSPOOL_EP_WORK:-$repo/.work}"
conf="$work/containers/containers.conf"

packages=(podman runc conmon netavark aardvark-dns iptables uidmap slirp4netns debootstrap shellcheck
          rpm rpmlint rpm2cpio cpio squashfuse squashfs-tools attr fuse3)

log() { printf 'setup-host: %s\n' "$*" >&2; }

missing_packages() {
    local p status
    for p in "${packages[@]}"; do
        status="$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)"
        [[ "$status" == installed ]] || printf '%s\n' "$p"
    done
}

install_packages() {
    local missing
    mapfile -t missing < <(missing_packages)
    if ((${#missing[@]} == 0)); then
        return 0
    fi
    if [[ $(id -u) -ne 0 ]]; then
        log "needs root to install: ${missing[*]}"
        exit 1
    fi
    log "installing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq </dev/null >&2
    # --no-install-recommends keeps buildah, dbus-user-session and
    # fuse-overlayfs out: root podman on ext4 uses the kernel's overlay driver
    # and builds with its built-in buildah.
    apt-get install -y -qq --no-install-recommends \
        -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
        "${missing[@]}" </dev/null >&2
}

write_containers_conf() {
    local want
    # runtime=runc and default_ulimits=[]: FACTS.md (crun fails on hybrid
    # cgroups; setrlimit NOFILE/NPROC is not permitted here).
    # cgroup_manager=cgroupfs, events_logger=file: PID 1 here is not systemd,
    # so podman's systemd/journald defaults only produce warnings or errors.
    # network_backend=netavark: explicit, so a stray CNI config cannot switch it.
    want='# Written by scripts/setup-host.sh; use with CONTAINERS_CONF=<this file>.
[containers]
default_ulimits = []

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"

[network]
network_backend = "netavark"
'
    mkdir -p "$(dirname "$conf")"
    if [[ -f "$conf" ]] && [[ "$(cat "$conf")"$'\n' == "$want" ]]; then
        return 0
    fi
    printf '%s' "$want" >"$conf.tmp"
    mv "$conf.tmp" "$conf"
    log "wrote $conf"
}

main() {
    if [[ "${1:-}" == --print-conf ]]; then
        printf '%s\n' "$conf"
        return 0
    fi
    install_packages
    write_containers_conf
    printf 'export CONTAINERS_CONF=%q\n' "$conf"
}

main "$@"
