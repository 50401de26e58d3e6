"""Resources: what CPUs, memory and disk this pilot may use, and what it will offer (SPEC 8).

Detection reads cgroup v1/v2 files, the CPU affinity mask, ``/proc``, the
Slurm job environment and the Kubernetes limits the manifests pass through the
downward API into one frozen :class:`HostLimits`; it never raises on
missing or odd files -- anything unreadable is *unknown* and said so in
``HostLimits.sources``. :func:`decide_offer` is pure: it turns the limits and the
site's ``NUM_CPUS``/``MEMORY`` into an :class:`Offer`, capping (with a WARN) what
the container could not honour, because an overcommitted pilot is OOM-killed
together with every job it runs. :func:`check_disk` checks the scratch directory.

"MB" means MiB and "GB" GiB throughout, as HTCondor's ``MEMORY`` and docker's
``--memory 4g`` count them.

Kernel references (paths in the Linux source tree):

* ``Documentation/admin-guide/cgroup-v2.rst`` -- ``cpu.max``, ``memory.max``,
  ``cpuset.cpus.effective``, ``/proc/<pid>/cgroup`` and cgroup namespaces.
* ``Documentation/scheduler/sched-bwc.rst`` -- CFS bandwidth control
  (v1 ``cpu.cfs_quota_us``/``cpu.cfs_period_us``).
* ``Documentation/admin-guide/cgroup-v1/memory.rst`` -- ``memory.limit_in_bytes``,
  ``hierarchical_memory_limit``.
* ``Documentation/admin-guide/cgroup-v1/cpusets.rst`` -- ``cpuset.cpus`` list format.
* ``Documentation/filesystems/proc.rst`` (3.5) -- ``/proc/<pid>/mountinfo``.

Kubernetes: the container's ``limits.cpu`` and ``limits.memory`` reach the pilot
as environment variables set with ``resourceFieldRef`` (Kubernetes docs, "Expose
Pod Information to Containers Through Environment Variables"); see
:data:`KUBERNETES_CPU_VARIABLE` and :data:`KUBERNETES_MEMORY_VARIABLE`. They
usually repeat the cgroup limits, but are also right where the cgroup is not
visible or not the container's own (VM-based runtimes, cgroup v1 without a
cgroup namespace).
"""

from __future__ import annotations

import math
import os
import re
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ospool_ep.findings import Findings, Kind

__all__ = [
    "KUBERNETES_CPU_VARIABLE",
    "KUBERNETES_MEMORY_VARIABLE",
    "HostLimits",
    "Offer",
    "check_disk",
    "decide_offer",
    "detect_limits",
    "parse_cpu_list",
]

_MIB = 1024 * 1024
_GIB = 1024 * _MIB

# cgroup v1 reports "no memory limit" as PAGE_COUNTER_MAX pages in bytes, i.e.
# LONG_MAX rounded down to the page size: 9223372036854771712 with 4 KiB pages,
# 9223372036854710272 with 64 KiB pages (arm64, ppc64le). Any value from 2**62
# bytes (4 EiB) up is that sentinel, not a real limit.
_V1_UNLIMITED_FROM = 2**62

_DIGITS = re.compile(r"[0-9]+")
"""ASCII digits only: ``int()`` would also take ``+3``, ``1_000`` and non-ASCII digits."""

_SLURM_CPUS_PER_NODE = re.compile(r"([0-9]+)(?:\(x[0-9]+\))?(?:,.*)?")
"""``SLURM_JOB_CPUS_PER_NODE``: ``4``, ``4(x2)``, ``72(x2),36`` -- this node is the first."""

_OCTAL_ESCAPE = re.compile(r"\\([0-7]{3})")

KUBERNETES_CPU_VARIABLE = "K8S_CPU_LIMIT_MILLICORES"
"""The container's ``limits.cpu`` in millicores: ``resourceFieldRef`` with ``divisor: 1m``.

Without a CPU limit the downward API gives the node's allocatable CPUs, still
an upper bound. deploy/kubernetes/base/deployment.yaml sets it."""
KUBERNETES_MEMORY_VARIABLE = "K8S_MEMORY_LIMIT_MIB"
"""The container's ``limits.memory`` in MiB: ``resourceFieldRef`` with ``divisor: 1Mi``
(the kubelet rounds up to the divisor). Without a limit: the node's allocatable memory."""


@dataclass(frozen=True)
class HostLimits:
    """What the container or job may use; each limit is ``None`` when unlimited or unknown."""

    cpu_quota: float | None
    """CPUs allowed by the CFS bandwidth quota (v2 ``cpu.max``, v1 quota/period)."""
    cpuset_cpus: int | None
    """Number of CPUs in the effective cpuset."""
    affinity_cpus: int | None
    """Number of CPUs in this process's affinity mask."""
    memory_limit_mb: int | None
    """cgroup memory limit (v2 ``memory.max``, v1 ``memory.limit_in_bytes``)."""
    host_cpus: int
    """CPUs of the machine."""
    host_memory_mb: int
    """``MemTotal`` of the machine."""
    slurm_cpus: int | None
    """CPUs of the Slurm allocation on this node."""
    slurm_memory_mb: int | None
    """Memory of the Slurm allocation on this node."""
    slurm_end_time: int | None
    """The Slurm job's end time (Unix epoch seconds), when exported."""
    kubernetes_cpus: float | None
    """CPUs of the Kubernetes ``limits.cpu`` (:data:`KUBERNETES_CPU_VARIABLE`)."""
    kubernetes_memory_mb: int | None
    """The Kubernetes ``limits.memory`` (:data:`KUBERNETES_MEMORY_VARIABLE`)."""
    sources: tuple[str, ...]
    """What was detected, and what could not be read, in words."""


@dataclass(frozen=True)
class Offer:
    """What the pilot will advertise as its slot resources."""

    cpus: int
    memory_mb: int


# --------------------------------------------------------------------------- parsing


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
        if not _DIGITS.fullmatch(first) or (dash and not _DIGITS.fullmatch(last)):
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


def _parse_nonneg_int(text: str) -> int:
    body = text.strip()
    if not _DIGITS.fullmatch(body):
        raise ValueError(f"not a non-negative integer: {body!r}")
    return int(body)


def _cpus(count: float) -> str:
    return f"{count:g} CPU" if count == 1 else f"{count:g} CPUs"


def _snippet(text: str) -> str:
    """A short, printable rendering of garbled file content for ``sources``."""
    body = text.strip()
    return repr(body if len(body) <= 40 else body[:37] + "...")


def _read_text(path: Path) -> str | None:
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
    text = _read_text(root / "proc/self/cgroup")
    if text is None:
        notes.append("/proc/self/cgroup unreadable; assuming this process is in the root cgroup")
        return {}
    own = _parse_proc_cgroup(text)
    if not own:
        notes.append(f"/proc/self/cgroup garbled ({_snippet(text)}); assuming root cgroup")
    return own


def _read_mounts(*, root: Path, notes: list[str]) -> list[_Mount]:
    text = _read_text(root / "proc/self/mountinfo")
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
            text = _read_text(directory / "cpu.max")
            if text is None:
                continue
            fields = text.split()
            if len(fields) == 2 and fields[0] == "max":
                continue
            quota_text, period_text = (fields[0], fields[1]) if len(fields) == 2 else (text, "")
        else:
            # cpu.cfs_quota_us is -1 for no limit.
            quota_text = _read_text(directory / "cpu.cfs_quota_us") or ""
            period_text = _read_text(directory / "cpu.cfs_period_us") or ""
            if not quota_text or quota_text.strip() == "-1":
                continue
        try:
            quota, period = _parse_nonneg_int(quota_text), _parse_nonneg_int(period_text)
            if quota == 0 or period == 0:
                raise ValueError("zero")
        except ValueError:
            shown = _snippet(f"{quota_text.strip()} {period_text.strip()}")
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
        text = _read_text(directory / name)
        if text is None or (h.version == 2 and text.strip() == "max"):
            continue
        try:
            limit = _parse_nonneg_int(text)
        except ValueError:
            notes.append(
                f"cgroup v{h.version} {name} in {h.show(directory)} "
                f"garbled ({_snippet(text)}); ignored"
            )
            continue
        if h.version == 1 and limit >= _V1_UNLIMITED_FROM:
            continue
        if best is None or limit < best[0]:
            best = (limit, f"{name}, {h.where(directory)}")
    if h.version == 1:
        for line in (_read_text(h.leaf / "memory.stat") or "").splitlines():
            key, _, value = line.partition(" ")
            if key == "hierarchical_memory_limit" and _DIGITS.fullmatch(value.strip()):
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
            text = _read_text(directory / name)
            if text is None:
                continue
            try:
                count = parse_cpu_list(text)
            except ValueError:
                notes.append(
                    f"cgroup v{h.version} {name} in {h.show(directory)} garbled "
                    f"({_snippet(text)}); cpuset unknown"
                )
                return None
            notes.append(
                f"cgroup v{h.version} {name}: {count} CPUs ({text.strip()}, {h.where(directory)})"
            )
            return count
    return None


# ------------------------------------------------------------------ host, Slurm, Kubernetes


def _host_cpus(*, root: Path, real: bool, notes: list[str]) -> int:
    if not real:
        text = _read_text(root / "proc/cpuinfo")
        if text is not None:
            count = sum(
                1 for line in text.splitlines() if line.split(":")[0].strip() == "processor"
            )
            if count > 0:
                notes.append(f"host: {count} CPUs (/proc/cpuinfo)")
                return count
        notes.append("/proc/cpuinfo unreadable or without processors; using this machine's count")
    count = os.cpu_count() or 1
    notes.append(f"host: {count} CPUs (os.cpu_count)")
    return count


def _host_memory_mb(*, root: Path, notes: list[str]) -> int:
    text = _read_text(root / "proc/meminfo")
    for line in (text or "").splitlines():
        key, _, value = line.partition(":")
        fields = value.split()
        if key == "MemTotal" and fields and _DIGITS.fullmatch(fields[0]):
            # proc.rst: meminfo values are in kB (KiB), "kB" unit despite the name.
            mib = int(fields[0]) // 1024
            notes.append(f"host: {mib} MB (/proc/meminfo MemTotal)")
            return mib
    try:
        mib = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // _MIB
    except (OSError, ValueError):
        mib = 0
    notes.append(f"/proc/meminfo without MemTotal; using this machine's {mib} MB (sysconf)")
    return mib


def _env_int(
    environ: Mapping[str, str], name: str, notes: list[str], *, origin: str = "Slurm"
) -> int | None:
    raw = environ.get(name)
    if raw is None or raw.strip() == "":
        return None
    try:
        return _parse_nonneg_int(raw)
    except ValueError:
        notes.append(f"{origin} {name}={_snippet(raw)} is not a number; ignored")
        return None


def _slurm(
    environ: Mapping[str, str], notes: list[str]
) -> tuple[int | None, int | None, int | None]:
    """CPUs, memory (MiB) and end time of the Slurm allocation on this node (sbatch(1))."""
    cpus = _env_int(environ, "SLURM_CPUS_ON_NODE", notes)
    if cpus is not None:
        notes.append(f"Slurm SLURM_CPUS_ON_NODE: {cpus} CPUs")
    else:
        raw = environ.get("SLURM_JOB_CPUS_PER_NODE")
        if raw:
            match = _SLURM_CPUS_PER_NODE.fullmatch(raw.strip())
            if match:
                cpus = int(match.group(1))
                notes.append(f"Slurm SLURM_JOB_CPUS_PER_NODE={raw.strip()}: {cpus} CPUs")
            else:
                notes.append(f"Slurm SLURM_JOB_CPUS_PER_NODE={_snippet(raw)} garbled; ignored")
    if cpus == 0:
        cpus = None

    # --mem and --mem-per-cpu are mutually exclusive; whichever was given is exported (MiB).
    memory = _env_int(environ, "SLURM_MEM_PER_NODE", notes)
    if memory is not None:
        notes.append(f"Slurm SLURM_MEM_PER_NODE: {memory} MB")
    else:
        per_cpu = _env_int(environ, "SLURM_MEM_PER_CPU", notes)
        if per_cpu is not None and cpus is not None:
            memory = per_cpu * cpus
            notes.append(f"Slurm SLURM_MEM_PER_CPU: {per_cpu} MB x {cpus} CPUs = {memory} MB")
        elif per_cpu is not None:
            notes.append("Slurm SLURM_MEM_PER_CPU set but the CPU count is unknown; ignored")
    if memory == 0:
        # --mem=0 asks for all of the node's memory: no limit of its own.
        memory = None

    end = _env_int(environ, "SLURM_JOB_END_TIME", notes)
    if end is not None:
        notes.append(f"Slurm SLURM_JOB_END_TIME: {end}")
    return cpus, memory, end


def _kubernetes(environ: Mapping[str, str], notes: list[str]) -> tuple[float | None, int | None]:
    """CPUs and memory (MiB) of the container's Kubernetes limits, from the downward API."""
    millicores = _env_int(environ, KUBERNETES_CPU_VARIABLE, notes, origin="Kubernetes")
    memory = _env_int(environ, KUBERNETES_MEMORY_VARIABLE, notes, origin="Kubernetes")
    cpus = None
    for name, value in (
        (KUBERNETES_CPU_VARIABLE, millicores),
        (KUBERNETES_MEMORY_VARIABLE, memory),
    ):
        if value == 0:
            # The downward API never reports 0 (no limit gives the node's
            # allocatable): a hand-set 0 is a mistake, not a limit.
            notes.append(f"Kubernetes {name}=0 is no limit; ignored")
    if millicores:
        cpus = millicores / 1000
        notes.append(f"Kubernetes {KUBERNETES_CPU_VARIABLE}={millicores}: {_cpus(cpus)}")
    if memory:
        notes.append(f"Kubernetes {KUBERNETES_MEMORY_VARIABLE}: {memory} MB")
    return cpus, memory or None


# --------------------------------------------------------------------------- detection


def detect_limits(
    *, root: Path = Path("/"), environ: Mapping[str, str], affinity: int | None = None
) -> HostLimits:
    """Detect what this process may use, reading files under ``root`` (a fixture tree in tests).

    ``affinity`` overrides the CPU affinity count; when it is ``None`` the real
    ``sched_getaffinity`` is used only if ``root`` is the real ``/`` (a fixture
    tree says nothing about this process's mask). Never raises.
    """
    notes: list[str] = []
    # realpath, unlike Path.resolve, never raises (symlink loops included).
    real = os.path.realpath(root) == "/"
    hierarchies = _find_hierarchies(root=root, notes=notes)

    cpu_quota = _cpu_quota(hierarchies["cpu"], notes) if "cpu" in hierarchies else None
    memory = _memory_limit(hierarchies["memory"], notes) if "memory" in hierarchies else None
    cpuset = _cpuset(hierarchies["cpuset"], notes) if "cpuset" in hierarchies else None
    if "cpu" in hierarchies and cpu_quota is None:
        notes.append("no CFS CPU quota found")
    if "memory" in hierarchies and memory is None:
        notes.append("no cgroup memory limit found")

    if affinity is None and real:
        try:
            affinity = len(os.sched_getaffinity(0))
        except (OSError, AttributeError):
            notes.append("sched_getaffinity unavailable")
    if affinity is not None:
        notes.append(f"CPU affinity: {affinity} CPUs")

    host_cpus = _host_cpus(root=root, real=real, notes=notes)
    host_memory = _host_memory_mb(root=root, notes=notes)
    slurm_cpus, slurm_memory, slurm_end = _slurm(environ, notes)
    kubernetes_cpus, kubernetes_memory = _kubernetes(environ, notes)

    return HostLimits(
        cpu_quota=cpu_quota,
        cpuset_cpus=cpuset,
        affinity_cpus=affinity,
        memory_limit_mb=memory,
        host_cpus=host_cpus,
        host_memory_mb=host_memory,
        slurm_cpus=slurm_cpus,
        slurm_memory_mb=slurm_memory,
        slurm_end_time=slurm_end,
        kubernetes_cpus=kubernetes_cpus,
        kubernetes_memory_mb=kubernetes_memory,
        sources=tuple(notes),
    )


# --------------------------------------------------------------------------- the offer


@dataclass(frozen=True)
class _Bound:
    value: int
    source: str
    """Where the limit comes from, e.g. ``the cgroup CPU quota (2.5 CPUs)``."""
    fix: str
    """How to raise it."""


def _cpu_bounds(limits: HostLimits) -> list[_Bound]:
    bounds: list[_Bound] = []
    if limits.cpu_quota is not None:
        # A slot needs whole CPUs; 1.5 CPUs of quota run 1 job at full speed.
        bounds.append(
            _Bound(
                max(1, math.floor(limits.cpu_quota)),
                f"the cgroup CPU quota ({_cpus(limits.cpu_quota)})",
                "raise the container's CPU limit (--cpus, Kubernetes limits.cpu)",
            )
        )
    if limits.cpuset_cpus is not None:
        bounds.append(
            _Bound(
                limits.cpuset_cpus,
                "the cgroup cpuset",
                "give the container more CPUs (--cpuset-cpus)",
            )
        )
    if limits.affinity_cpus is not None:
        bounds.append(
            _Bound(
                limits.affinity_cpus,
                "the CPU affinity mask",
                "start the container with more CPUs in its affinity (taskset, --cpuset-cpus)",
            )
        )
    if limits.kubernetes_cpus is not None:
        # Like the CFS quota it usually mirrors: whole CPUs, at least one.
        bounds.append(
            _Bound(
                max(1, math.floor(limits.kubernetes_cpus)),
                f"the Kubernetes CPU limit ({_cpus(limits.kubernetes_cpus)})",
                "raise the container's resources.limits.cpu",
            )
        )
    if limits.slurm_cpus is not None:
        bounds.append(
            _Bound(
                limits.slurm_cpus,
                "the Slurm allocation",
                "request more CPUs (sbatch -c/--cpus-per-task)",
            )
        )
    bounds.append(_Bound(limits.host_cpus, "the host's CPU count", "this machine has no more CPUs"))
    return bounds


def _memory_bounds(limits: HostLimits) -> list[_Bound]:
    bounds: list[_Bound] = []
    if limits.memory_limit_mb is not None:
        bounds.append(
            _Bound(
                limits.memory_limit_mb,
                "the cgroup memory limit",
                "raise the container's memory limit (--memory, Kubernetes limits.memory)",
            )
        )
    if limits.kubernetes_memory_mb is not None:
        bounds.append(
            _Bound(
                limits.kubernetes_memory_mb,
                "the Kubernetes memory limit",
                "raise the container's resources.limits.memory",
            )
        )
    if limits.slurm_memory_mb is not None:
        bounds.append(
            _Bound(
                limits.slurm_memory_mb, "the Slurm allocation", "request more memory (sbatch --mem)"
            )
        )
    bounds.append(
        _Bound(limits.host_memory_mb, "the host's MemTotal", "this machine has no more memory")
    )
    return bounds


def decide_offer(
    *,
    limits: HostLimits,
    num_cpus: int | None,
    memory_mb: int | None,
    overhead_mb: int,
    findings: Findings,
) -> Offer:
    """Choose the CPUs and memory to offer: the site's request, capped at what may be used.

    The effective limit is the smallest of every detected bound. ``NUM_CPUS``/
    ``MEMORY`` above it is a WARN and is capped; memory also keeps
    ``overhead_mb`` back for the pilot's own daemons. Too little memory left
    for any slot is an environment FAIL; the returned offer then has 0 MB.
    Values below 1 for ``num_cpus``/``memory_mb`` are treated as unset: settings
    validation reports them.
    """
    cpu_limit = min(_cpu_bounds(limits), key=lambda b: b.value)
    if num_cpus is not None and num_cpus >= 1:
        if num_cpus > cpu_limit.value:
            findings.warn(
                "NUM_CPUS",
                f"NUM_CPUS={num_cpus} is more than the {_cpus(cpu_limit.value)} "
                f"this pilot may use, set by {cpu_limit.source}; offering {cpu_limit.value}",
                f"lower NUM_CPUS to {cpu_limit.value} or less, or {cpu_limit.fix}",
            )
            cpus = cpu_limit.value
        else:
            cpus = num_cpus
        why = f"NUM_CPUS={num_cpus}; limit {cpu_limit.value} from {cpu_limit.source}"
    else:
        cpus = cpu_limit.value
        why = f"NUM_CPUS not set; limit from {cpu_limit.source}"
    findings.passed("CPUs", f"offering {_cpus(cpus)} ({why})")

    mem_limit = min(_memory_bounds(limits), key=lambda b: b.value)
    available = mem_limit.value - overhead_mb
    if available < 1:
        findings.fail(
            "memory",
            f"{mem_limit.source} is {mem_limit.value} MB, not more than the "
            f"{overhead_mb} MB MEMORY_OVERHEAD_MB kept for the pilot's own daemons; "
            "no memory is left for jobs",
            f"{mem_limit.fix}, or lower MEMORY_OVERHEAD_MB",
            kind=Kind.ENVIRONMENT,
        )
        return Offer(cpus=cpus, memory_mb=0)
    if memory_mb is not None and memory_mb >= 1:
        if memory_mb > available:
            findings.warn(
                "MEMORY",
                f"MEMORY={memory_mb} MB is more than the {available} MB this pilot may offer "
                f"({mem_limit.source}, {mem_limit.value} MB, "
                f"less MEMORY_OVERHEAD_MB={overhead_mb}); "
                f"offering {available} MB so the pilot is not OOM-killed with all its jobs",
                f"lower MEMORY to {available} or less, or {mem_limit.fix}",
            )
            memory = available
        else:
            memory = memory_mb
        why = f"MEMORY={memory_mb}; limit {available} MB"
    else:
        memory = available
        why = "MEMORY not set; limit"
    findings.passed(
        "memory",
        f"offering {memory} MB ({why} = {mem_limit.source} {mem_limit.value} MB "
        f"less MEMORY_OVERHEAD_MB={overhead_mb})",
    )
    return Offer(cpus=cpus, memory_mb=memory)


# --------------------------------------------------------------------------- disk


def check_disk(*, path: Path, min_gb: float, findings: Findings) -> int | None:
    """Check the scratch directory exists, is writable and has ``min_gb`` GiB free.

    Returns the free space in MiB (for the slot's Disk), or ``None`` when the
    directory cannot be used at all. Failures are environment FAILs (exit 69).
    """
    subject = "PILOT_DIR"
    fix_mount = "mount a volume at /pilot (-v /some/dir:/pilot) or set PILOT_DIR to a directory"
    if not path.is_dir():
        what = "does not exist" if not path.exists() else "is not a directory"
        findings.fail(subject, f"{path} {what}", fix_mount, kind=Kind.ENVIRONMENT)
        return None
    # os.access alone is not enough: root passes it on any mode bits, and a
    # read-only mount or a full inode table only shows when a file is created.
    writable = os.access(path, os.W_OK | os.X_OK)
    reason = "permission denied"
    if writable:
        try:
            with tempfile.NamedTemporaryFile(dir=path, prefix=".ospool-ep-write-test-"):
                pass
        except OSError as err:
            writable = False
            reason = err.strerror or type(err).__name__
    if not writable:
        findings.fail(
            subject,
            f"{path} is not writable by uid {os.geteuid()} ({reason})",
            f"chown {path} to uid {os.geteuid()} on the host, or {fix_mount}",
            kind=Kind.ENVIRONMENT,
        )
        return None
    try:
        st = os.statvfs(path)
    except OSError as err:
        findings.fail(
            subject,
            f"cannot read free space of {path}: {err.strerror}",
            fix_mount,
            kind=Kind.ENVIRONMENT,
        )
        return None
    # f_bavail: blocks free to unprivileged users (excludes root's reserve), in f_frsize units.
    free = st.f_bavail * st.f_frsize
    free_gb = free / _GIB
    if free_gb < min_gb:
        findings.fail(
            subject,
            f"{path} has {free_gb:.1f} GB free, less than MIN_DISK_GB={min_gb:g}",
            f"mount a bigger volume at {path} or lower MIN_DISK_GB",
            kind=Kind.ENVIRONMENT,
        )
    else:
        findings.passed(
            subject,
            f"{path} has {free_gb:.1f} GB free (MIN_DISK_GB={min_gb:g})",
            kind=Kind.ENVIRONMENT,
        )
    return free // _MIB
