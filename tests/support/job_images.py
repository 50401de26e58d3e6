"""Job images for the containment tests: a CVMFS-like tree as OSG publishes it.

The host has no Apptainer; the pilot image has. So the images are built by the
pilot image's own ``apptainer`` in a throwaway container (as root there, which
is the host user under rootless podman: the files come back owned by the test's
user, and inside a pilot they are root's, readable and not writable by uid 1000),
from a docker archive of the debootstrapped Debian base
(``scripts/build-base-image.sh``). The layout::

    <tree>/config-osg.opensciencegrid.org/etc/          (probed repos: not empty)
    <tree>/oasis.opensciencegrid.org/etc/
    <tree>/singularity.opensciencegrid.org/htc/rocky:8  directory image, marker "htc/rocky:8"
    <tree>/singularity.opensciencegrid.org/htc/rocky:9  directory image, marker "htc/rocky:9"
    <tree>/singularity.opensciencegrid.org/test/marker.sif   SIF image, marker "test/marker.sif"

(the names of the default distribution ``10%__htc/rocky:8 90%__htc/rocky:9``; the
rootfs is Debian's, the names are what matter). Every image has ``MARKER`` holding
its name, so a job can say which image it ran in. ``<tree>`` is bind-mounted as the
pilot's ``/cvmfs`` (host CVMFS mode, as ``tests/e2e/test_cvmfs.py`` does).

Built once per base image (keyed by its id) under
``.work/job-images/``; a rerun finds them there in milliseconds.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pool  # tests/support/pool.py

SINGULARITY_REPO = "singularity.opensciencegrid.org"
MARKER = "/ospool-ep-test-image"
"""A file in every test image holding the image's name under SINGULARITY_REPO."""
DIRECTORY_IMAGES = ("htc/rocky:8", "htc/rocky:9")
SIF_IMAGE = "test/marker.sif"
OTHER_REPOS = ("config-osg.opensciencegrid.org", "oasis.opensciencegrid.org")
RECIPE = "2"
"""Bump when the layout or the build below changes: old caches are then ignored."""

CACHE = pool.WORK / "job-images"

_BUILD = r"""
set -eu
export APPTAINER_CACHEDIR=/tmp/apptainer-cache APPTAINER_TMPDIR=/tmp
repo=/out/singularity.opensciencegrid.org
mkdir -p "$repo/htc" "$repo/test"
# Everything on /out: hard links do not cross file systems.
work=/out/.build
mkdir -p "$work"
apptainer -q build --sandbox "$work/base" docker-archive:/in/base.tar
first=""
for name in $DIRECTORY_IMAGES; do
    if [ -z "$first" ]; then
        mv "$work/base" "$repo/$name"; first="$repo/$name"
    else
        cp -al "$first" "$repo/$name"   # hard links: one copy of the rootfs on disk
    fi
    rm -f "$repo/$name$MARKER"
    printf '%s\n' "$name" > "$repo/$name$MARKER"
done
# The SIF from the first image with its own marker (a hard-linked copy, marker replaced).
cp -al "$first" "$work/sif-root"
rm -f "$work/sif-root$MARKER"
printf '%s\n' "$SIF_IMAGE" > "$work/sif-root$MARKER"
apptainer -q build "$repo/$SIF_IMAGE" "$work/sif-root"
rm -rf "$work"
for other in $OTHER_REPOS; do mkdir -p "/out/$other/etc"; echo "$other" > "/out/$other/README"; done
chmod -R a+rX,go-w /out
"""


def _podman(*argv: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    environ = {**os.environ, "CONTAINERS_CONF": str(pool.CONTAINERS_CONF)}
    return subprocess.run(
        ["podman", *argv], capture_output=True, text=True, timeout=timeout, env=environ, check=False
    )


def _inspect(image: str, template: str) -> str:
    result = _podman("image", "inspect", "--format", template, image, timeout=60)
    if result.returncode != 0:
        raise pool.PoolError(f"podman image inspect {image}: {result.stderr.strip()}")
    return result.stdout.strip().replace("<no value>", "")


def base_image(pilot_image: str = pool.IMAGE) -> str:
    """The debootstrapped base the pilot image was built on (its suite's), or
    ``OSPOOL_EP_JOB_BASE_IMAGE`` where set."""
    explicit = os.environ.get("OSPOOL_EP_JOB_BASE_IMAGE")
    if explicit:
        return explicit
    suite = _inspect(pilot_image, '{{index .Labels "org.ospool-ep.debian-suite"}}') or "forky"
    return f"localhost/debian-{suite}-base:latest"


def has_apptainer(pilot_image: str = pool.IMAGE) -> bool:
    """The image's variant (its org.ospool-ep.apptainer-suite label): Apptainer inside,
    so its pilots contain jobs; the Debian-stable build has none."""
    return bool(_inspect(pilot_image, '{{index .Labels "org.ospool-ep.apptainer-suite"}}'))


def unavailable_reason(pilot_image: str = pool.IMAGE) -> str | None:
    """Why job images cannot be built here (None when they can)."""
    if not has_apptainer(pilot_image):
        return f"{pilot_image} has no Apptainer (the Debian-stable build)"
    base = base_image(pilot_image)
    if _podman("image", "exists", base, timeout=60).returncode != 0:
        return f"base image {base} missing (scripts/build-base-image.sh makes it)"
    return None


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def cache_key(base: str) -> str:
    """The base image's id and the recipe: a rebuilt pilot image reuses the images."""
    ids = f"{_inspect(base, '{{.Id}}')} {RECIPE}"
    return hashlib.sha256(ids.encode()).hexdigest()[:16]


def cvmfs_tree(pilot_image: str = pool.IMAGE) -> Path:
    """The tree to bind-mount as ``/cvmfs``, built unless cached; raises PoolError
    with the build's output when it fails."""
    base = base_image(pilot_image)
    key = cache_key(base)
    done = CACHE / key / "cvmfs"
    with _locked(CACHE / ".lock"):
        if (CACHE / key / "complete").is_file():
            return done
        shutil.rmtree(CACHE / key, ignore_errors=True)
        (CACHE / key).mkdir(parents=True)
        with tempfile.TemporaryDirectory(dir=CACHE, prefix="build-") as scratch:
            archive = Path(scratch) / "base.tar"
            saved = _podman("save", "--format", "docker-archive", "-o", str(archive), base)
            if saved.returncode != 0:
                raise pool.PoolError(f"podman save {base}: {saved.stderr.strip()}")
            out = Path(scratch) / "cvmfs"
            out.mkdir()
            built = _podman(
                "run", "--rm", "--network", "none", "--user", "0",
                "--security-opt", "unmask=/proc/*",
                "-e", f"DIRECTORY_IMAGES={' '.join(DIRECTORY_IMAGES)}",
                "-e", f"SIF_IMAGE={SIF_IMAGE}",
                "-e", f"MARKER={MARKER}",
                "-e", f"OTHER_REPOS={' '.join(OTHER_REPOS)}",
                "-v", f"{archive}:/in/base.tar:ro",
                "-v", f"{out}:/out",
                "--entrypoint", "sh", pilot_image, "-c", _BUILD,
            )  # fmt: skip
            if built.returncode != 0:
                raise pool.PoolError(
                    f"building job images in {pilot_image} exited {built.returncode}:\n"
                    f"{built.stdout[-3000:]}\n{built.stderr[-3000:]}"
                )
            out.chmod(0o755)
            out.rename(done)
        (CACHE / key / "complete").write_text(f"{pilot_image} {base}\n")
    return done


def image_path(name: str) -> str:
    """Where a pilot sees image ``name`` (e.g. ``htc/rocky:9``)."""
    return f"/cvmfs/{SINGULARITY_REPO}/{name}"
