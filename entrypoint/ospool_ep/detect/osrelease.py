"""The job image's operating system, as OSG's pilot publishes it (``OSG_OS_*``, SPEC 6.2).

osg-flock's advertise-userenv runs inside the default job image and names its OS
from ``/etc/issue`` and the distributions' release files: ``RHEL``, ``DEBIAN``,
``UBUNTU`` or ``SUSE``, with the major version only. Here the same names come from
the image's ``os-release(5)`` (and ``/etc/debian_version`` for Debian, as upstream),
read from the image's directory tree; :func:`job_os` is pure.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

_RHEL_FAMILY = frozenset({"rhel", "centos", "fedora"})


@dataclass(frozen=True, kw_only=True)
class JobOs:
    name: str = "Unknown"
    version: str = "0"
    kernel: str = "Unknown"

    @property
    def string(self) -> str:
        return f"{self.name} {self.version}"

    def attributes(self) -> dict[str, str]:
        """Attribute -> string value; the OSGVO_ names are upstream's deprecated copies."""
        values = {"NAME": self.name, "VERSION": self.version, "STRING": self.string}
        values["KERNEL"] = self.kernel
        return {
            f"{prefix}_OS_{key}": value
            for prefix in ("OSG", "OSGVO")
            for key, value in values.items()
        }


def parse_os_release(text: str) -> dict[str, str]:
    """os-release(5): ``KEY=value`` lines, values in shell quoting; bad lines are skipped."""
    fields = {}
    for line in text.splitlines():
        key, sep, value = line.strip().partition("=")
        if not sep or not re.fullmatch(r"[A-Z0-9_]+", key):
            continue
        try:
            words = shlex.split(value)
        except ValueError:
            continue
        fields[key] = " ".join(words)
    return fields


def _major(version: str) -> str:
    """Upstream's form: no blanks, ``/`` as ``_``, cut at the first ``.`` or ``-``."""
    cleaned = re.sub(r"\s", "", version).replace("/", "_")
    return re.split(r"[.-]", cleaned, maxsplit=1)[0]


def job_os(os_release: dict[str, str], *, debian_version: str | None, kernel: str) -> JobOs:
    """Upstream's name and major version for an image with this os-release."""
    ident = os_release.get("ID", "").lower()
    like = set(os_release.get("ID_LIKE", "").lower().split())
    version = os_release.get("VERSION_ID", "")
    if ident == "ubuntu":
        name = "UBUNTU"
    elif debian_version is not None:
        name, version = "DEBIAN", debian_version
    elif ident in _RHEL_FAMILY or like & _RHEL_FAMILY:
        name = "RHEL"
    elif "suse" in ident or "suse" in like:
        name = "SUSE"
    else:
        name = ident.upper()
    return JobOs(
        name=_plain(name) or "Unknown",
        version=_plain(_major(version)) or "0",
        kernel=_plain(kernel) or "Unknown",
    )


def _plain(text: str) -> str:
    """Only what a release name or number holds: the image's files are not ours to trust."""
    return re.sub(r"[^A-Za-z0-9._+~-]", "", text)[:64]


def _inside(root: Path, relative: str) -> Path | None:
    """``root/relative``, following symlinks inside the image (an absolute link means the
    image's own root, not the pilot's); None when it is not a readable file."""
    path = root / relative
    for _ in range(8):
        if not path.is_symlink():
            return path if path.is_file() else None
        target = str(path.readlink())
        path = root / target.lstrip("/") if target.startswith("/") else path.parent / target
    return None


def read_job_os(image_root: Path, *, kernel: str) -> JobOs:
    """The OS of the image whose directory tree is at ``image_root`` (``/`` for the
    pilot's own, which the built-in image and bare jobs use); Unknown when unreadable."""
    text = ""
    for relative in ("etc/os-release", "usr/lib/os-release"):
        found = _inside(image_root, relative)
        if found is not None:
            try:
                text = found.read_text(errors="replace")
            except OSError:
                continue
            break
    debian = _inside(image_root, "etc/debian_version")
    debian_version = None
    if debian is not None:
        try:
            debian_version = debian.read_text(errors="replace").strip()
        except OSError:
            debian_version = None
    return job_os(parse_os_release(text), debian_version=debian_version, kernel=kernel)
