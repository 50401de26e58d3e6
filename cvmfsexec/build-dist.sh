#!/usr/bin/env bash
# Build a cvmfsexec distribution into DEST, for the image (SPEC 9.4).
#
# Usage: cvmfsexec/build-dist.sh VERSION DEST
#   VERSION  a tag or branch of cvmfsexec, or "latest" for its highest tag
#   DEST     where the pilot looks for it: /usr/lib/ospool-ep/cvmfsexec
#            (ospool_ep.cvmfsexec.DISTRIBUTION)
# Environment: CVMFSEXEC_SOURCE  the git repository (default: cvmfs/cvmfsexec on GitHub)
#
# `makedist osg` downloads the CVMFS client RPMs and OSG's configuration from
# CERN and OSG: this needs a network beyond the Debian mirror, so the default
# image build (no --build-arg CVMFSEXEC_VERSION) does not run it. It needs
# git, curl, rpm2cpio and cpio (the Dockerfile installs them in a build stage).
#
# The result is read-only in the image: each pilot copies it into its own
# directory at start, because cvmfsexec writes next to itself (mount points,
# cache, logs).
set -euo pipefail

version="${1:?usage: build-dist.sh VERSION DEST}"
dest="${2:?usage: build-dist.sh VERSION DEST}"
source="${CVMFSEXEC_SOURCE:-https://github.com/cvmfs/cvmfsexec}"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

git clone --quiet "$source" "$work/cvmfsexec"
cd "$work/cvmfsexec"
if [[ $version == latest ]]; then
    version="$(git tag --sort=version:refname | tail -n 1)"
fi
git -c advice.detachedHead=false checkout --quiet "$version"
# Debian 13 gets the rhel9 binaries (makedist maps it itself).
./makedist osg
# Cache and logs belong to each pilot (or to the /cvmfs-cache and /cvmfs-logs mounts).
rm -rf dist/var/lib/cvmfs log

mkdir -p "$dest"
cp -a cvmfsexec mountrepo umountrepo dist "$dest/"
printf '%s\n' "$version" >"$dest/VERSION"
echo "build-dist: cvmfsexec $version in $dest" >&2
