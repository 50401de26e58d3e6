"""Cgroups: where this process's cgroup is, and the limits its cgroup v1/v2 files set (SPEC 8).

:func:`read_limits` finds the process's own cgroup in each mounted hierarchy
(v1, v2 or the "hybrid" mix, with or without a cgroup namespace) and reads the
CFS CPU quota, the memory limit and the effective cpuset on the way up to the
mount point, the tightest one winning. It never raises on missing or odd
files: anything unreadable is *unknown*, and said so in the notes it is given.
The tolerant readers it uses for kernel text (:func:`read_text`,
:func:`parse_nonneg_int`, :func:`snippet`) serve :mod:`ospool_ep.detect.limits` too.

"MB" means MiB throughout, as HTCondor's ``MEMORY`` counts it.

Kernel references (paths in the Linux source tree):

* ``Documentation/admin-guide/cgroup-v2.rst`` -- ``cpu.max``, ``memory.max``,
  ``cpuset.cpus.effective``, ``/proc/<pid>/cgroup`` and cgroup namespaces.
* ``Documentation/scheduler/sched-bwc.rst`` -- CFS bandwidth control
  (v1 ``cpu.cfs_quota_us``/``cpu.cfs_period_us``).
* ``Documentation/admin-guide/cgroup-v1/memory.rst`` -- ``memory.limit_in_bytes``,
  ``hierarchical_memory_limit``.
* ``Documentation/admin-guide/cgroup-v1/cpusets.rst`` -- ``cpuset.cpus`` list format.
* ``Documentation/filesystems/proc.rst`` (3.5) -- ``/proc/<pid>/mountinfo``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

__all__ = [
    "DIGITS",
    "CgroupLimits",
    "parse_cpu_list",
    "parse_nonneg_int",
    "read_limits",
    "read_text",
    "snippet",
]

_MIB = 1024 * 1024

# cgroup v1 reports "no memory limit" as PAGE_COUNTER_MAX pages in bytes, i.e.
# LONG_MAX rounded down to the page size: 9223372036854771712 with 4 KiB pages,
# 9223372036854710272 with 64 KiB pages (arm64, ppc64le). Any value from 2**62
# bytes (4 EiB) up is that sentinel, not a real limit.
_V1_UNLIMITED_FROM = 2**62

DIGITS = re.compile(r"[0-9]+")
"""ASCII digits only: ``int()`` would also take ``+3``, ``1_000`` and non-ASCII digits."""

_OCTAL_ESCAPE = re.compile(r"\\([0-7]{3})")


@dataclass(frozen=True)
class CgroupLimits:
    """What this process's cgroups allow; each limit is ``None`` when unlimited or unknown."""

    cpu_quota: float | None
    """CPUs allowed by the CFS bandwidth quota (v2 ``cpu.max``, v1 quota/period)."""
    cpuset_cpus: int | None
    """Number of CPUs in the effective cpuset."""
    memory_limit_mb: int | None
    """cgroup memory limit (v2 ``memory.max``, v1 ``memory.limit_in_bytes``)."""


def read_limits(*, root: Path, notes: list[str]) -> CgroupLimits:
    """The limits of this process's cgroups, reading files under ``root`` (a fixture tree in tests).

    What was found, and what could not be read, is appended to ``notes`` in
    words. Never raises.
    """
    hierarchies = _find_hierarchies(root=root, notes=notes)
    cpu_quota = _cpu_quota(hierarchies["cpu"], notes) if "cpu" in hierarchies else None
    memory = _memory_limit(hierarchies["memory"], notes) if "memory" in hierarchies else None
    cpuset = _cpuset(hierarchies["cpuset"], notes) if "cpuset" in hierarchies else None
    if "cpu" in hierarchies and cpu_quota is None:
        notes.append("no CFS CPU quota found")
    if "memory" in hierarchies and memory is None:
        notes.append("no cgroup memory limit found")
    return CgroupLimits(cpu_quota=cpu_quota, cpuset_cpus=cpuset, memory_limit_mb=memory)


# --------------------------------------------------------------------------- kernel text


def parse_cpu_list(text: str) -> int:
    """Count the CPUs in a kernel CPU list such as ``"0-3,6,8-9"`` (7).

    The format is the one cpuset files print (cgroup-v1/cpusets.rst, "cpuset.cpus"):
    comma-separated numbers and inclusive ranges, ending in a newline. Overlaps
    are counted once. Raises :class:`ValueError` on anything else, including an
    empty list, reversed ranges and the ``a-b:used/group`` stride form of the
    kernel command line, which cpuset files never print.
    """
    body = text.strip()
    if not body:
        raise ValueError("empty CPU list")
    ranges: list[tuple[int, int]] = []
    for item in body.split(","):
        first, dash, last = item.partition("-")
        if not DIGITS.fullmatch(first) or (dash and not DIGITS.fullmatch(last)):
            raise ValueError(f"bad CPU list item {item!r} in {body!r}")
        low = int(first)
        high = int(last) if dash else low
        if high < low:
            raise ValueError(f"reversed CPU range {item!r} in {body!r}")
        ranges.append((low, high))
    # Merge intervals instead of building a set: a garbled "0-4294967295" must
    # not allocate billions of ints.
    ranges.sort()
    count = 0
    end = -1
    for low, high in ranges:
        if high <= end:
            continue
        count += high - max(low, end + 1) + 1
        end = high
    return count


def parse_nonneg_int(text: str) -> int:
    """``text`` as ASCII digits around optional whitespace; :class:`ValueError` otherwise."""
    body = text.strip()
    if not DIGITS.fullmatch(body):
        raise ValueError(f"not a non-negative integer: {body!r}")
    return int(body)


def snippet(text: str) -> str:
    """A short, printable rendering of garbled file content for ``sources``."""
    body = text.strip()
    return repr(body if len(body) <= 40 else body[:37] + "...")


def read_text(path: Path) -> str | None:
    """The file's text, or ``None`` if it is missing or unreadable (never raises)."""
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except (OSError, ValueError):
        return None


# --------------------------------------------------------------------------- cgroup layout


@dataclass(frozen=True)
class _Mount:
    fstype: str
    """``cgroup`` (v1) or ``cgroup2``."""
    root: PurePosixPath
    """The cgroup of the hierarchy that is the mount's root (mountinfo field 4)."""
    mountpoint: PurePosixPath
    controllers: frozenset[str]
    """v1: the controllers of this hierarchy (``cpu``, ``memory``, ``name=systemd``)."""


def _unescape(field: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \ooo (proc.rst 3.5).
    return _OCTAL_ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), field)


def _parse_mountinfo(text: str) -> list[_Mount]:
    """The cgroup mounts of a ``/proc/self/mountinfo`` text; odd lines are skipped.

    A line is ``id parent maj:min root mountpoint options [optional...] - fstype
    source superoptions``; the optional fields vary, so the part after the
    ``-`` separator is found by position of that separator (proc.rst 3.5).
    """
    mounts: list[_Mount] = []
    for line in text.splitlines():
        fields = line.split()
        try:
            sep = fields.index("-", 6)
        except ValueError:
            continue
        tail = fields[sep + 1 :]
        if len(tail) < 1 or tail[0] not in ("cgroup", "cgroup2"):
            continue
        superopts = tail[2].split(",") if len(tail) >= 3 else []
        mounts.append(
            _Mount(
                fstype=tail[0],
                root=PurePosixPath(_unescape(fields[3])),
                mountpoint=PurePosixPath(_unescape(fields[4])),
                controllers=frozenset(superopts) if tail[0] == "cgroup" else frozenset(),
            )
        )
    return mounts


def _parse_proc_cgroup(text: str) -> dict[str, PurePosixPath]:
    """``/proc/self/cgroup`` as controller -> path; the v2 hierarchy is keyed ``""``.

    Lines are ``hierarchy-ID:controller-list:cgroup-path`` (cgroups(7)); v2 is
    ``0::/path``. The path may itself contain ``:``, hence ``maxsplit=2``.
    """
    paths: dict[str, PurePosixPath] = {}
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3 or not parts[2].startswith("/"):
            continue
        _, controllers, path = parts
        if controllers == "":
            paths[""] = PurePosixPath(path)
            continue
        for controller in controllers.split(","):
            paths[controller] = PurePosixPath(path)
    return paths


@dataclass(frozen=True)
class _Hierarchy:
    """Where one controller's files for this process are, and how far up to look."""

    version: int
    leaf: Path
    """This process's own cgroup directory (under the detection root)."""
    top: Path
    """The mount point under the detection root: nothing above it is visible."""
    mountpoint: PurePosixPath
    """The mount point as the process sees it, for ``sources``."""

    def upwards(self) -> Iterator[Path]:
        """The leaf, then each parent up to and including the mount point."""
        current = self.leaf
        while True:
            yield current
            if current in (self.top, current.parent):
                return
            current = current.parent

    def show(self, directory: Path) -> str:
        """``directory`` as the process sees it (without the detection root)."""
        try:
            return str(self.mountpoint.joinpath(*directory.relative_to(self.top).parts))
        except ValueError:
            return str(directory)

    def where(self, directory: Path) -> str:
        """``own cgroup`` or ``parent <path>``: whose file a limit came from."""
        return "own cgroup" if directory == self.leaf else f"parent {self.show(directory)}"


def _under(root: Path, inner: PurePosixPath) -> Path:
    return root.joinpath(*inner.parts[1:]) if inner.is_absolute() else root / inner


def _locate(*, root: Path, mount: _Mount, cgroup: PurePosixPath | None, version: int) -> _Hierarchy:
    """Find this process's cgroup directory in a mounted hierarchy.

    Without a cgroup namespace (v1 docker, ``--cgroupns=host``) the path in
    ``/proc/self/cgroup`` is absolute in the host's hierarchy while the mount's
    root is the container's own cgroup (e.g. both ``/docker/<id>``): strip the
    mount root. With a private namespace (the podman/docker default on v2) the
    path is ``/`` or relative to the namespace root, which is the mount root:
    join it to the mount point. When neither names a directory (a namespace
    created after the process moved, a lying file), use the mount point itself.
    """
    top = _under(root, mount.mountpoint)
    candidates: list[PurePosixPath] = []
    if cgroup is not None:
        if mount.root != PurePosixPath("/") and cgroup.is_relative_to(mount.root):
            candidates.append(PurePosixPath("/") / cgroup.relative_to(mount.root))
        candidates.append(cgroup)
    for inner in candidates:
        # A cgroup outside the namespace's root shows as "/../.." (cgroup-v2.rst,
        # "Namespace"): not below this mount, and pathlib would not fold the "..".
        if ".." in inner.parts:
            continue
        leaf = _under(top, inner)
        if leaf.is_dir():
            return _Hierarchy(version, leaf, top, mount.mountpoint)
    return _Hierarchy(version, top, top, mount.mountpoint)


def _read_own_cgroups(*, root: Path, notes: list[str]) -> dict[str, PurePosixPath]:
    text = read_text(root / "proc/self/cgroup")
    if text is None:
        notes.append("/proc/self/cgroup unreadable; assuming this process is in the root cgroup")
        return {}
    own = _parse_proc_cgroup(text)
    if not own:
        notes.append(f"/proc/self/cgroup garbled ({snippet(text)}); assuming root cgroup")
    return own


def _read_mounts(*, root: Path, notes: list[str]) -> list[_Mount]:
    text = read_text(root / "proc/self/mountinfo")
    if text is None:
        mounts = _guess_mounts(root=root)
        notes.append(
            "/proc/self/mountinfo unreadable; "
            + ("guessed the usual layout under /sys/fs/cgroup" if mounts else "no cgroup found")
        )
        return mounts
    mounts = _parse_mountinfo(text)
    if not mounts:
        notes.append("no cgroup filesystem mounted; cgroup limits unknown")
    return mounts


def _find_hierarchies(*, root: Path, notes: list[str]) -> dict[str, _Hierarchy]:
    """controller (``cpu``, ``memory``, ``cpuset``) -> where its files are.

    A controller mounted as a v1 hierarchy is used there; otherwise the v2
    hierarchy holds it. That one rule covers pure v1, pure v2, and "hybrid"
    systems (v1 controllers plus an empty cgroup2 at /sys/fs/cgroup/unified).
    """
    own = _read_own_cgroups(root=root, notes=notes)
    mounts = _read_mounts(root=root, notes=notes)
    v1 = [m for m in mounts if m.fstype == "cgroup"]
    v2 = [m for m in mounts if m.fstype == "cgroup2"]
    found: dict[str, _Hierarchy] = {}
    for controller in ("cpu", "memory", "cpuset"):
        mount = next((m for m in v1 if controller in m.controllers), None)
        if mount is not None:
            found[controller] = _locate(
                root=root, mount=mount, cgroup=own.get(controller), version=1
            )
        elif v2:
            # Prefer the canonical mount point if v2 is mounted more than once.
            mount = next((m for m in v2 if str(m.mountpoint) == "/sys/fs/cgroup"), v2[0])
            found[controller] = _locate(root=root, mount=mount, cgroup=own.get(""), version=2)
    if found:
        versions = {h.version for h in found.values()}
        if versions == {2}:
            layout = "cgroup v2"
        elif versions == {1, 2}:
            layout = "cgroup v1+v2 (hybrid)"
        elif v2:
            # systemd's "hybrid" mode: v1 controllers plus a controller-less cgroup2.
            layout = f"cgroup v1 (hybrid: cgroup2 at {v2[0].mountpoint} holds no cpu/memory)"
        else:
            layout = "cgroup v1"
        leaf = found.get("memory") or next(iter(found.values()))
        notes.append(f"{layout}, own cgroup at {leaf.show(leaf.leaf)}")
    return found


def _guess_mounts(*, root: Path) -> list[_Mount]:
    """The usual layout, for when mountinfo cannot be read."""
    base = root / "sys/fs/cgroup"
    if (base / "cgroup.controllers").is_file():
        return [_Mount("cgroup2", PurePosixPath("/"), PurePosixPath("/sys/fs/cgroup"), frozenset())]
    mounts: list[_Mount] = []
    for controller in ("cpu", "memory", "cpuset"):
        if (base / controller).is_dir():
            mounts.append(
                _Mount(
                    "cgroup",
                    PurePosixPath("/"),
                    PurePosixPath("/sys/fs/cgroup") / controller,
                    frozenset({controller}),
                )
            )
    return mounts


# --------------------------------------------------------------------------- cgroup limits


def _cpu_quota(h: _Hierarchy, notes: list[str]) -> float | None:
    """The smallest CFS quota of the cgroup and its visible parents, in CPUs.

    Bandwidth limits are hierarchical: a child never runs more than its
    parent's quota (sched-bwc.rst, "Hierarchical considerations"), so the
    tightest one on the way up is the one that applies.
    """
    label = "cpu.max" if h.version == 2 else "cpu.cfs_quota_us/cpu.cfs_period_us"
    best: tuple[float, Path] | None = None
    for directory in h.upwards():
        if h.version == 2:
            # "$MAX $PERIOD" with $MAX "max" for no limit; absent on the root cgroup.
            text = read_text(directory / "cpu.max")
            if text is None:
                continue
            fields = text.split()
            if len(fields) == 2 and fields[0] == "max":
                continue
            quota_text, period_text = (fields[0], fields[1]) if len(fields) == 2 else (text, "")
        else:
            # cpu.cfs_quota_us is -1 for no limit.
            quota_text = read_text(directory / "cpu.cfs_quota_us") or ""
            period_text = read_text(directory / "cpu.cfs_period_us") or ""
            if not quota_text or quota_text.strip() == "-1":
                continue
        try:
            quota, period = parse_nonneg_int(quota_text), parse_nonneg_int(period_text)
            if quota == 0 or period == 0:
                raise ValueError("zero")
        except ValueError:
            shown = snippet(f"{quota_text.strip()} {period_text.strip()}")
            notes.append(
                f"cgroup v{h.version} {label} in {h.show(directory)} garbled ({shown}); ignored"
            )
            continue
        cpus = quota / period
        if best is None or cpus < best[0]:
            best = (cpus, directory)
    if best is None:
        return None
    notes.append(f"cgroup v{h.version} {label}: {best[0]:g} CPUs ({h.where(best[1])})")
    return best[0]


def _memory_limit(h: _Hierarchy, notes: list[str]) -> int | None:
    """The smallest memory limit of the cgroup and its visible parents, in MiB.

    A parent's limit caps its whole subtree (cgroup-v2.rst, "Top-down
    Constraint"; v1 memory.rst 6, hierarchy support). On v1 the kernel also
    reports the effective limit over *all* ancestors, even those a container
    cannot see, as ``hierarchical_memory_limit`` in ``memory.stat``.
    """
    name = "memory.max" if h.version == 2 else "memory.limit_in_bytes"
    best: tuple[int, str] | None = None
    for directory in h.upwards():
        # Only the hard limit: past memory.high the kernel throttles and reclaims,
        # past memory.max it OOM-kills, and the kill is what the offer must avoid.
        text = read_text(directory / name)
        if text is None or (h.version == 2 and text.strip() == "max"):
            continue
        try:
            limit = parse_nonneg_int(text)
        except ValueError:
            notes.append(
                f"cgroup v{h.version} {name} in {h.show(directory)} "
                f"garbled ({snippet(text)}); ignored"
            )
            continue
        if h.version == 1 and limit >= _V1_UNLIMITED_FROM:
            continue
        if best is None or limit < best[0]:
            best = (limit, f"{name}, {h.where(directory)}")
    if h.version == 1:
        for line in (read_text(h.leaf / "memory.stat") or "").splitlines():
            key, _, value = line.partition(" ")
            if key == "hierarchical_memory_limit" and DIGITS.fullmatch(value.strip()):
                limit = int(value)
                if limit < _V1_UNLIMITED_FROM and (best is None or limit < best[0]):
                    best = (limit, "memory.stat hierarchical_memory_limit, own cgroup")
    if best is None:
        return None
    mib = best[0] // _MIB
    notes.append(f"cgroup v{h.version} memory limit: {mib} MB ({best[1]})")
    return mib


def _cpuset(h: _Hierarchy, notes: list[str]) -> int | None:
    """CPUs in the nearest effective cpuset.

    v2 ``cpuset.cpus.effective`` already folds in every parent's restriction
    (cgroup-v2.rst, "Cpuset Interface Files"), and a cgroup without the
    controller enabled uses its parent's: the nearest file wins. v1
    ``cpuset.cpus`` is always a subset of the parent's (cpusets.rst 1.4).
    """
    if h.version == 2:
        names: tuple[str, ...] = ("cpuset.cpus.effective",)
    else:
        names = ("cpuset.effective_cpus", "cpuset.cpus")
    for directory in h.upwards():
        for name in names:
            text = read_text(directory / name)
            if text is None:
                continue
            try:
                count = parse_cpu_list(text)
            except ValueError:
                notes.append(
                    f"cgroup v{h.version} {name} in {h.show(directory)} garbled "
                    f"({snippet(text)}); cpuset unknown"
                )
                return None
            notes.append(
                f"cgroup v{h.version} {name}: {count} CPUs ({text.strip()}, {h.where(directory)})"
            )
            return count
    return None
