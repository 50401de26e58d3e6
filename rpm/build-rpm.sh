#!/bin/bash
# Build dist/ospool-ep-<version>-<release>.noarch.rpm from the working tree
# (`make rpm`). Works on an RPM host and on Debian/Ubuntu, where it installs
# rpm and rpmlint with apt-get when they are missing (root needed then); python3
# lists the launcher's modules (scripts/import_closure.py).
#
# Environment: RELEASE (default 1), DIST (default dist/), PACKAGER (the
# Packager tag, set here rather than in the spec), RPMLINT=0 to skip rpmlint.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
release="${RELEASE:-1}"
dist="${DIST:-$repo/dist}"
log() { printf 'build-rpm: %s\n' "$*" >&2; }

# The launcher's modules are what /usr/bin/ospool-ep imports, computed (and
# checked to be standard library only) rather than listed; the spec installs
# the tarball's entrypoint/ospool_ep tree as it is. From the working tree,
# checked before anything is installed.
closure="$(cd "$repo" && python3 scripts/import_closure.py rpm/ospool-ep)" \
    || { log "the launcher must import only the standard library (above)"; exit 1; }
mapfile -t modules <<<"$closure"

if ! command -v rpmbuild >/dev/null || { [[ "${RPMLINT:-1}" != 0 ]] && ! command -v rpmlint >/dev/null; }; then
    if command -v apt-get >/dev/null; then
        log "installing rpm and rpmlint (apt-get)"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rpm rpmlint >/dev/null
    elif command -v dnf >/dev/null; then
        log "installing rpm-build and rpmlint (dnf)"
        dnf install -y -q rpm-build rpmlint systemd-rpm-macros
    else
        log "rpmbuild is missing and no apt-get or dnf to install it"; exit 1
    fi
fi

# The version is the package's (entrypoint/ospool_ep/__init__.py), read without importing it.
version="$(sed -n 's/^__version__ = "\(.*\)"$/\1/p' "$repo/entrypoint/ospool_ep/__init__.py")"
[[ -n "$version" ]] || { log "no __version__ in entrypoint/ospool_ep/__init__.py"; exit 1; }

top="$(mktemp -d)"
trap 'rm -rf "$top"' EXIT
mkdir -p "$top"/{SOURCES,SPECS,BUILD,RPMS,SRPMS}
stage="$top/stage/ospool-ep-$version"
mkdir -p "$stage"
# Exactly what the spec installs.
( cd "$repo" && cp --parents \
    README.md rpm/ospool-ep rpm/ospool-ep.cfg systemd/ospool-ep.service systemd/ospool-ep@.service \
    "${modules[@]}" "$stage/" )
tar -C "$top/stage" --owner=0 --group=0 --numeric-owner -czf "$top/SOURCES/ospool-ep-$version.tar.gz" "ospool-ep-$version"

# rpmbuild checks BuildRequires against the RPM database, which is empty
# where rpm is not the system's package manager.
nodeps=()
rpm -q rpm >/dev/null 2>&1 || nodeps=(--nodeps)

rpmbuild -bb --quiet "${nodeps[@]}" \
    --define "_topdir $top" \
    --define "ospool_version $version" \
    --define "ospool_release $release" \
    --define "packager ${PACKAGER:-ospool-ep developers}" \
    "$repo/rpm/ospool-ep.spec"

mkdir -p "$dist"
package="ospool-ep-$version-$release.noarch.rpm"
cp "$top/RPMS/noarch/"ospool-ep-"$version"-"$release"*.noarch.rpm "$dist/$package"
log "built $dist/$package"
if [[ "${RPMLINT:-1}" != 0 ]]; then
    # The filters (rpm/ospool-ep.rpmlintrc) say why each is accepted.
    rpmlint --rpmlintrc "$repo/rpm/ospool-ep.rpmlintrc" "$dist/$package"
fi
