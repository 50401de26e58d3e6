"""The RPM (SPEC 11): built by ``rpm/build-rpm.sh`` (``make rpm``), inspected, linted, and run.

The host side needs only the distribution's python3 (EL9: 3.9): the launcher
modules import nothing outside the standard library, ``vermin`` finds no
construct newer than 3.9 in them, and the packaged ``/usr/bin/ospool-ep``
runs under a real Python 3.9 when this machine has one.
"""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ospool_ep import __version__
from test_launch_units import HOST_MODULES, python39
from venv_tools import venv_tool

REPO = Path(__file__).resolve().parents[1]
SPEC = REPO / "rpm" / "ospool-ep.spec"
PACKAGE = f"ospool-ep-{__version__}-1.noarch.rpm"
MODULES_DIR = REPO / "entrypoint" / "ospool_ep"


def _can_build() -> str | None:
    """Tests never install packages: `make rpm` does (rpm, rpmlint from apt or dnf)."""
    missing = [
        tool for tool in ("rpmbuild", "rpmlint", "rpm2cpio", "cpio") if not shutil.which(tool)
    ]
    return f"{', '.join(missing)} missing: run `make rpm` once" if missing else None


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    """(the package, build-rpm.sh's output including rpmlint's report)."""
    reason = _can_build()
    if reason:
        pytest.skip(reason)
    dist = tmp_path_factory.mktemp("dist")
    result = subprocess.run(
        [str(REPO / "rpm" / "build-rpm.sh")],
        env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": str(dist), "DIST": str(dist)},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    print(result.stdout + result.stderr)
    assert result.returncode == 0, result.stdout + result.stderr
    yield dist / PACKAGE, result.stdout + result.stderr


def rpm_query(package: Path, *args: str) -> str:
    return subprocess.run(
        ["rpm", "-qp", *args, str(package)], capture_output=True, text=True, timeout=60, check=True
    ).stdout


@pytest.fixture(scope="module")
def extracted(built: tuple[Path, str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("rpmroot")
    archive = subprocess.run(
        ["rpm2cpio", str(built[0])], capture_output=True, timeout=60, check=True
    ).stdout
    subprocess.run(["cpio", "-idm", "--quiet"], input=archive, cwd=root, check=True, timeout=60)
    return root


def test_make_rpm_builds_the_noarch_package(built: tuple[Path, str]) -> None:
    package, _ = built
    assert package.is_file()
    assert rpm_query(package, "--qf", "%{NAME} %{VERSION} %{RELEASE} %{ARCH}") == (
        f"ospool-ep {__version__} 1 noarch"
    )


def test_the_file_list(built: tuple[Path, str]) -> None:
    files = set(rpm_query(built[0], "-l").split())
    assert files == {
        "/etc/osg",
        "/etc/osg/ospool-ep.cfg",
        "/etc/osg/ospool-ep.d",
        "/usr/bin/ospool-ep",
        "/usr/lib/systemd/system/ospool-ep.service",
        "/usr/lib/systemd/system/ospool-ep@.service",
        f"/usr/share/doc/ospool-ep-{__version__}",
        f"/usr/share/doc/ospool-ep-{__version__}/README.md",
        "/usr/share/ospool-ep",
        "/usr/share/ospool-ep/ospool_ep",
        *(f"/usr/share/ospool-ep/ospool_ep/{m}.py" for m in HOST_MODULES),
    }
    modes = {line.split()[-1]: line.split()[0] for line in rpm_query(built[0], "-lv").splitlines()}
    assert modes["/usr/bin/ospool-ep"] == "-rwxr-xr-x"
    assert modes["/etc/osg/ospool-ep.cfg"] == "-rw-r--r--"


def test_the_config_file_is_noreplace(built: tuple[Path, str]) -> None:
    """%config(noreplace): an upgrade never overwrites the site's edits."""
    flags = rpm_query(built[0], "--qf", "[%{FILEFLAGS:fflags} %{FILENAMES}\n]")
    (line,) = [entry for entry in flags.splitlines() if entry.endswith("/etc/osg/ospool-ep.cfg")]
    assert line.split()[0] == "cn"  # config, noreplace


def test_the_scriptlets(built: tuple[Path, str]) -> None:
    """Install: preset (enabled only where the site's presets say so); erase:
    disable and stop, the template's instances too; upgrade: reload only,
    never restart running pilots (that would evict their jobs)."""
    scripts = rpm_query(built[0], "--scripts")
    print(scripts)
    post, preun, postun = (
        re.search(rf"{name} scriptlet.*?:\n(.*?)(?=\n\w+ scriptlet|\Z)", scripts, re.S)
        for name in ("postinstall", "preuninstall", "postuninstall")
    )
    assert post and preun and postun, scripts
    assert re.search(r"\$1 -eq 1.*preset ospool-ep\.service|install-system-units", post[1])
    assert "disable --now ospool-ep.service" in preun[1] or "remove-system-units" in preun[1]
    assert "stop 'ospool-ep@*.service'" in preun[1]
    assert "restart" not in postun[1]


def test_the_requirements(built: tuple[Path, str]) -> None:
    requires = rpm_query(built[0], "--requires").splitlines()
    assert "python3" in requires
    assert "(podman or /usr/bin/docker)" in requires
    assert "/usr/bin/python3" in requires  # the entry script's interpreter


def test_rpmlint_reports_no_errors(built: tuple[Path, str]) -> None:
    _, output = built
    summary = re.search(r"(\d+) errors, (\d+) warnings", output)
    assert summary, output
    assert summary[1] == "0", output


def test_the_packaged_launcher_prints_the_command(extracted: Path, tmp_path: Path) -> None:
    """/usr/bin/ospool-ep from the package, with the shipped config filled in."""
    interpreter = python39() or sys.executable
    cfg = tmp_path / "ospool-ep.cfg"
    text = (extracted / "etc/osg/ospool-ep.cfg").read_text()
    token = tmp_path / "token"
    token.write_text("a.b.c\n")
    token.chmod(0o644)
    cfg.write_text(
        text.replace("\nGLIDEIN_Site=\n", "\nGLIDEIN_Site=S\n")
        .replace("\nGLIDEIN_ResourceName=\n", "\nGLIDEIN_ResourceName=R\n")
        .replace("\nTOKEN_LOCATION=/etc/osg/ospool-ep.tkn\n", f"\nTOKEN_LOCATION={token}\n")
    )
    run = subprocess.run(
        [
            interpreter,
            str(extracted / "usr/bin/ospool-ep"),
            "launch",
            "--config",
            str(cfg),
            "--engine",
            "podman",
            "--print",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"PATH": "/usr/bin:/bin"},
    )
    if shutil.which("podman", path="/usr/bin:/bin") is None:
        assert run.returncode == 69
        return
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("podman run --rm --name ospool-ep ")
    version = subprocess.run(
        [interpreter, str(extracted / "usr/bin/ospool-ep"), "version"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert version.stdout.startswith(f"ospool-ep {__version__} (host launcher)")
    if python39():
        assert "Python 3.9" in version.stdout
    unknown = subprocess.run(
        [interpreter, str(extracted / "usr/bin/ospool-ep"), "check"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert unknown.returncode == 2
    assert (
        "commands of the container image"
        in subprocess.run(
            [interpreter, str(extracted / "usr/bin/ospool-ep"), "--help"],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout
    )


# ---------------------------------------------------------------------------
# Standard library only, Python 3.9 (no package build needed)


def _host_files() -> list[Path]:
    return [MODULES_DIR / f"{m}.py" for m in HOST_MODULES] + [REPO / "rpm" / "ospool-ep"]


def test_the_spec_installs_exactly_the_host_modules() -> None:
    spec = SPEC.read_text()
    loop = re.search(r"for module in ([\w\s\\]+); do", spec)
    assert loop, "the %install loop over the launcher's modules"
    modules = [word for word in loop[1].split() if word != "\\"]
    assert sorted(modules) == sorted(HOST_MODULES)
    build = (REPO / "rpm" / "build-rpm.sh").read_text()
    for module in HOST_MODULES:
        assert f"entrypoint/ospool_ep/{module}.py" in build


def test_the_host_modules_import_only_the_standard_library_and_each_other() -> None:
    """No jinja2, htcondor, classad2, requests: the RPM host has none of them."""
    allowed = {f"ospool_ep.{m}" for m in HOST_MODULES} | {"ospool_ep", "ospool_ep.__version__"}
    for path in _host_files():
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
                if node.module == "ospool_ep":
                    names = [f"ospool_ep.{alias.name}" for alias in node.names]
            for name in names:
                top = name.split(".")[0]
                assert name in allowed or top in sys.stdlib_module_names, f"{path.name}: {name}"


def test_the_spec_version_fallback_is_the_package_version() -> None:
    match = re.search(r"%global ospool_version (\S+)\}", SPEC.read_text())
    assert match and match[1] == __version__


def test_vermin_finds_nothing_newer_than_python_3_9() -> None:
    """vermin (pip install vermin) reads the files the RPM ships; the real
    Python 3.9 runs, where present, are in test_launch_units and above."""
    vermin = venv_tool("vermin")
    result = subprocess.run(
        [vermin, "--target=3.9-", "--no-tips", "--violations", *map(str, _host_files())],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_host_modules_compile_and_import_under_python_3_9(tmp_path: Path) -> None:
    interpreter = python39()
    if interpreter is None:
        pytest.skip("no python3.9 on this machine")
    share = tmp_path / "ospool_ep"
    share.mkdir()
    for module in HOST_MODULES:
        shutil.copy2(MODULES_DIR / f"{module}.py", share)
    imports = "; ".join(f"import ospool_ep.{m}" for m in HOST_MODULES)
    result = subprocess.run(
        [
            interpreter,
            "-I",
            "-W",
            "error",
            "-c",
            f"import sys; sys.path.insert(0, {str(tmp_path)!r}); {imports}",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
