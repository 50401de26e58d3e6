"""Test helpers shared by several test modules (from test_launch_units.py)."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from host_closure import copy_modules, launcher_files
from paths import REPO


@dataclass(frozen=True)
class ExecLine:
    argv: tuple[str, ...]
    ignore_failure: bool
    """The ``-`` prefix: a failing ExecStartPre does not fail the start."""


UNITS = REPO / "systemd"


SERVICE = UNITS / "ospool-ep.service"


TEMPLATE = UNITS / "ospool-ep@.service"


def install_tree(root: Path) -> Path:
    """Lay out the package's files under ``root`` as ``rpm/ospool-ep.spec`` installs them."""
    (root / "usr/bin").mkdir(parents=True, exist_ok=True)
    shutil.copy2(REPO / "rpm/ospool-ep", root / "usr/bin/ospool-ep")
    copy_modules(launcher_files(), root / "usr/share/ospool-ep")
    units = root / "usr/lib/systemd/system"
    units.mkdir(parents=True, exist_ok=True)
    for unit in (SERVICE, TEMPLATE):
        shutil.copy2(unit, units)
    (root / "etc/osg/ospool-ep.d").mkdir(parents=True, exist_ok=True)
    shutil.copy2(REPO / "rpm/ospool-ep.cfg", root / "etc/osg/ospool-ep.cfg")
    return root


def python39() -> str | None:
    """A Python 3.9 interpreter (EL9's python3), if this machine has one."""
    candidates = [shutil.which("python3.9") or ""]
    candidates += sorted(str(p) for p in Path.home().glob(".pyenv/versions/3.9*/bin/python3.9"))
    for candidate in candidates:
        if not candidate:
            continue
        try:
            out = subprocess.run(
                [candidate, "-c", "import sys; print(sys.version_info[:2])"],
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
        except OSError:
            continue
        if out.returncode == 0 and out.stdout.strip() == "(3, 9)":
            return candidate
    return None


@dataclass
class Unit:
    """A unit file, read as systemd reads the keys these units use."""

    path: Path
    instance: str = ""
    sections: dict[str, dict[str, list[str]]] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path, instance: str = "") -> Unit:
        unit = cls(path, instance)
        section = ""
        for raw in path.read_text().splitlines():
            line = raw.strip()
            if not line or line.startswith(("#", ";")):
                continue
            if line.startswith("[") and line.endswith("]"):
                section = line[1:-1]
                continue
            key, _, value = line.partition("=")
            unit.sections.setdefault(section, {}).setdefault(key.strip(), []).append(value.strip())
        return unit

    @property
    def name(self) -> str:
        prefix = self.path.name.split("@")[0]
        return f"{prefix}@{self.instance}.service" if self.instance else self.path.name

    def values(self, key: str, section: str = "Service") -> list[str]:
        return self.sections.get(section, {}).get(key, [])

    def value(self, key: str, section: str = "Service") -> str:
        found = self.values(key, section)
        assert len(found) == 1, f"{key} in {self.path.name}: {found}"
        return found[0]

    def expand(self, text: str) -> str:
        """systemd.unit(5) specifiers used by these units."""
        prefix = self.path.name.split("@")[0].removesuffix(".service")
        table = {"i": self.instance, "I": self.instance, "n": self.name, "p": prefix}
        table["N"] = self.name.removesuffix(".service")
        return re.sub(r"%(.)", lambda m: "%" if m[1] == "%" else table[m[1]], text)

    def exec_lines(self, key: str) -> list[ExecLine]:
        lines = []
        for value in self.values(key):
            ignore = value.startswith("-")
            lines.append(ExecLine(tuple(shlex.split(self.expand(value.lstrip("-@:+!")))), ignore))
        return lines

    def seconds(self, key: str) -> int:
        text = self.value(key)
        match = re.fullmatch(r"(\d+)(s|min)?", text)
        assert match, f"{key}={text}"
        return int(match[1]) * (60 if match[2] == "min" else 1)

    def exit_statuses(self, key: str) -> set[int]:
        return {int(word) for value in self.values(key) for word in value.split()}

    def restarts_after(self, code: int) -> bool:
        """Whether systemd restarts the service after its main process exits with ``code``
        on its own (systemd.service(5): Restart=, RestartPreventExitStatus=,
        RestartForceExitStatus=; a stop asked for is never followed by a restart)."""
        if code in self.exit_statuses("RestartPreventExitStatus"):
            return False
        if code in self.exit_statuses("RestartForceExitStatus"):
            return True
        assert self.value("Restart") == "on-failure"
        return code != 0


@dataclass(frozen=True)
class Relocation:
    """Where the packaged paths are in a test: the launcher command and /etc/osg."""

    launcher: tuple[str, ...]
    etc_osg: Path

    def argv(self, line: ExecLine) -> list[str]:
        head, *rest = line.argv
        assert head == "/usr/bin/ospool-ep", line.argv
        moved = [word.replace("/etc/osg/", f"{self.etc_osg}/") for word in rest]
        return [*self.launcher, *moved]
