"""The RPM (SPEC 11): built by ``rpm/build-rpm.sh`` (``make rpm``), inspected, linted, and run.

The host side needs only the distribution's python3 (EL9: 3.9): the launcher
modules import nothing outside the standard library, ``vermin`` finds no
construct newer than 3.9 in them, and the packaged ``/usr/bin/ospool-ep``
runs under a real Python 3.9 when this machine has one. Which modules those
are is computed from ``rpm/ospool-ep``'s imports (``scripts/import_closure.py``,
:mod:`host_closure`), by the build script and by these tests alike.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from host_closure import (
    ENTRYPOINT,
    LAUNCHER,
    TOOL,
    copy_modules,
    import_closure,
    launcher_files,
    module_name,
)
from paths import REPO
from units import python39
from upstream_rpm import CORPUS as UPSTREAM_CORPUS
from upstream_rpm import (
    UPSTREAM_LAUNCHER,
    UPSTREAM_RELEASE,
    UPSTREAM_UNIT,
    UPSTREAM_VERSION,
    as_shipped,
    build_standin,
    fill,
    in_root,
    install_args,
    token_and_scratch,
    vercmp,
)
from venv_tools import venv_tool

from ospool_ep import __version__

SPEC = REPO / "rpm" / "ospool-ep.spec"
PACKAGE = f"ospool-ep-{__version__}-1.noarch.rpm"
SHARE = "/usr/share/ospool-ep"


def _can_build() -> str | None:
    """Tests never install packages: `make rpm` does (rpm, rpmlint from apt or dnf)."""
    missing = [
        tool for tool in ("rpmbuild", "rpmlint", "rpm2cpio", "cpio") if not shutil.which(tool)
    ]
    return f"{', '.join(missing)} missing: run `make rpm` once" if missing else None


def _build(repo: Path, dist: Path) -> subprocess.CompletedProcess[str]:
    """``repo``'s ``rpm/build-rpm.sh``, with only the system's directories on PATH."""
    result = subprocess.run(
        [str(repo / "rpm" / "build-rpm.sh")],
        env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": str(dist), "DIST": str(dist)},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    print(result.stdout + result.stderr)
    return result


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    """(the package, build-rpm.sh's output including rpmlint's report)."""
    reason = _can_build()
    if reason:
        pytest.skip(reason)
    dist = tmp_path_factory.mktemp("dist")
    result = _build(REPO, dist)
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
    assert rpm_query(package, "--qf", "%{NAME} %{EPOCH} %{VERSION} %{RELEASE} %{ARCH}") == (
        f"ospool-ep 1 {__version__} 1 noarch"
    )


def _packaged(files: tuple[Path, ...]) -> set[str]:
    """Where the spec installs ``files`` (modules under ``entrypoint/``), with the
    directories of their packages, as ``rpm -ql`` lists them."""
    installed = {Path(SHARE) / file.relative_to(ENTRYPOINT) for file in files}
    directories = {d for file in installed for d in file.parents if d.is_relative_to(SHARE)}
    return {str(path) for path in installed | directories}


def test_the_file_list(built: tuple[Path, str]) -> None:
    """The launcher's modules are exactly its import closure: nothing more, nothing less."""
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
        *_packaged(launcher_files()),
    }
    modes = {line.split()[-1]: line.split()[0] for line in rpm_query(built[0], "-lv").splitlines()}
    assert modes["/usr/bin/ospool-ep"] == "-rwxr-xr-x"
    assert modes["/etc/osg/ospool-ep.cfg"] == "-rw-r--r--"


def _repo_copy(root: Path, launcher_import: str) -> Path:
    """What ``make rpm`` reads, copied to ``root``, with ``launcher_import`` added to
    ``rpm/ospool-ep`` before its first import of the package."""
    for name in ("README.md", "rpm", "systemd", "scripts/import_closure.py"):
        source, target = REPO / name, root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target)
        else:
            shutil.copy2(source, target)
    copy_modules(launcher_files(), root / "entrypoint")
    script = root / "rpm" / "ospool-ep"
    lines = script.read_text().splitlines(keepends=True)
    first = next(i for i, line in enumerate(lines) if re.match(r"(from|import) ospool_ep\b", line))
    lines.insert(first, f"{launcher_import}  # noqa: E402\n")
    script.write_text("".join(lines))
    return root


def test_a_sub_package_the_launcher_imports_ships_in_its_directories(tmp_path: Path) -> None:
    """A module in a sub-package ships at its place with every ``__init__.py`` above
    it, relative imports followed; a module nothing imports stays out. (The spec's
    %check runs the launcher, so a module left out would fail the build.)"""
    reason = _can_build()
    if reason:
        pytest.skip(reason)
    repo = _repo_copy(tmp_path / "repo", "import ospool_ep.host.deep")
    host = repo / "entrypoint" / "ospool_ep" / "host"
    (host / "deep").mkdir(parents=True)
    (host / "__init__.py").write_text('"""The launcher\'s modules."""\n')
    (host / "deep" / "__init__.py").write_text("from . import leaf\n")
    (host / "deep" / "leaf.py").write_text("from ...exitcodes import ExitCode\n")
    (host / "unused.py").write_text("import jinja2\n")
    result = _build(repo, tmp_path / "dist")
    assert result.returncode == 0, result.stdout + result.stderr
    package = tmp_path / "dist" / PACKAGE
    modes = {line.split()[-1]: line.split()[0] for line in rpm_query(package, "-lv").splitlines()}
    share = f"{SHARE}/ospool_ep/host"
    assert modes[share] == modes[f"{share}/deep"] == "drwxr-xr-x"
    for module in ("__init__.py", "deep/__init__.py", "deep/leaf.py"):
        assert modes[f"{share}/{module}"] == "-rw-r--r--", module
    assert f"{share}/unused.py" not in modes
    assert f"{SHARE}/ospool_ep/exitcodes.py" in modes
    assert re.search(r" 0 errors, \d+ warnings", result.stdout + result.stderr)


def test_make_rpm_refuses_a_launcher_that_imports_a_third_party_module(tmp_path: Path) -> None:
    """The host has no jinja2: the build stops, naming the file and line, before rpmbuild."""
    reason = _can_build()
    if reason:
        pytest.skip(reason)  # build-rpm.sh would install them
    repo = _repo_copy(tmp_path / "repo", "import jinja2")
    result = _build(repo, tmp_path / "dist")
    assert result.returncode == 1
    assert re.search(r"rpm/ospool-ep:\d+: imports jinja2, which is neither", result.stderr)
    assert "the launcher must import only the standard library" in result.stderr
    assert not (tmp_path / "dist").exists()


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
    assert run.stdout.startswith("podman run --rm --name ospool-ep-container ")
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
# The upgrade from OSG's ospool-ep RPM (SPEC 11)

UPSTREAM_EVR = f"{UPSTREAM_VERSION}-{UPSTREAM_RELEASE}"


def our_evr(package: Path) -> str:
    return rpm_query(package, "--qf", "%{EPOCH}:%{VERSION}-%{RELEASE}")


def test_our_version_sorts_above_every_version_of_osgs_package(built: tuple[Path, str]) -> None:
    """Same Name, so dnf upgrades by EVR alone: Epoch 1 puts ours above OSG's
    1.0-5 (without it, 0.1.0 would sort below 1.0 and dnf would keep OSG's) and
    above any release OSG makes later, which must not replace ours."""
    ours = our_evr(built[0])
    assert ours.startswith("1:")
    assert vercmp(ours, UPSTREAM_EVR) == 1
    assert vercmp(ours, "99.0-1.osg25.el10") == 1
    assert vercmp(ours.removeprefix("1:"), UPSTREAM_EVR) == -1  # why the Epoch is there
    obsoletes = rpm_query(built[0], "--obsoletes").split()
    assert not obsoletes  # same Name: nothing to obsolete


@pytest.fixture(scope="module")
def standin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """OSG's package as a stand-in: its Name, EVR, files and shipped cfg."""
    if _can_build():
        pytest.skip(_can_build() or "")
    return build_standin(tmp_path_factory.mktemp("upstream"))


def _host_with_upstream(root: Path, standin: Path) -> None:
    assert in_root(root, "--initdb").returncode == 0
    done = in_root(root, "-i", *install_args(), str(standin))
    assert done.returncode == 0, done.stderr
    assert in_root(root, "-q", "ospool-ep").stdout.strip() == f"ospool-ep-{UPSTREAM_EVR}.noarch"


def test_rpm_upgrades_osgs_package_and_keeps_the_sites_edited_cfg(
    built: tuple[Path, str], standin: Path, tmp_path: Path
) -> None:
    """``rpm -U`` (what ``dnf upgrade`` runs) over OSG's package, no --force or
    --oldpackage: ours replaces it, the site's edited /etc/osg/ospool-ep.cfg stays
    byte for byte (ours is left beside it as .rpmnew), OSG's launcher script goes,
    and the kept file launches with the upgraded /usr/bin/ospool-ep."""
    root = tmp_path / "root"
    _host_with_upstream(root, standin)
    token, scratch = tmp_path / "token", tmp_path / "scratch"
    token_and_scratch(token, scratch)
    cfg = root / "etc/osg/ospool-ep.cfg"
    edited = fill((UPSTREAM_CORPUS / "gpu.cfg").read_text(), token=token, scratch=scratch)
    cfg.write_text(edited)
    done = in_root(root, "-U", *install_args(), str(built[0]))
    assert done.returncode == 0, done.stderr
    assert "saved as" not in done.stderr  # noreplace: nothing of the site's is moved
    installed = in_root(root, "-qa", "ospool-ep").stdout.split()
    assert installed == [f"ospool-ep-{our_evr(built[0]).removeprefix('1:')}.noarch"]
    assert cfg.read_text() == edited
    assert (root / "etc/osg/ospool-ep.cfg.rpmnew").read_text() == (
        REPO / "rpm/ospool-ep.cfg"
    ).read_text()
    assert not (root / UPSTREAM_LAUNCHER.lstrip("/")).exists()
    assert (root / UPSTREAM_UNIT.lstrip("/")).read_text() == (
        REPO / "systemd/ospool-ep.service"
    ).read_text()
    launched = _print(root, cfg)
    assert launched.returncode == 0, launched.stderr
    argv = launched.stdout.split()
    assert argv[:5] == ["docker", "run", "--rm", "--name", "ospool-ep-container"]
    assert "--gpus" in argv
    assert "ACCEPT_JOBS_FOR_HOURS=24" in argv


def test_an_unedited_cfg_from_osgs_package_becomes_ours(
    built: tuple[Path, str], standin: Path, tmp_path: Path
) -> None:
    """%config(noreplace) replaces a file the site never edited: no .rpmnew."""
    root = tmp_path / "root"
    _host_with_upstream(root, standin)
    cfg = root / "etc/osg/ospool-ep.cfg"
    assert cfg.read_text() == as_shipped()
    done = in_root(root, "-U", *install_args(), str(built[0]))
    assert done.returncode == 0, done.stderr
    assert cfg.read_text() == (REPO / "rpm/ospool-ep.cfg").read_text()
    assert not (root / "etc/osg/ospool-ep.cfg.rpmnew").exists()


def test_osgs_package_does_not_replace_ours(
    built: tuple[Path, str], standin: Path, tmp_path: Path
) -> None:
    """With both repositories enabled, OSG's package is older: rpm refuses it."""
    root = tmp_path / "root"
    assert in_root(root, "--initdb").returncode == 0
    assert in_root(root, "-i", *install_args(), str(built[0])).returncode == 0
    done = in_root(root, "-U", "--test", *install_args(), str(standin))
    assert done.returncode != 0
    assert "which is newer than" in done.stderr


def _print(root: Path, cfg: Path) -> subprocess.CompletedProcess[str]:
    """The installed launcher's ``launch --print`` with a docker that is never run."""
    fake = root.parent / "fakebin"
    fake.mkdir(exist_ok=True)
    (fake / "docker").write_text("#!/bin/sh\nexit 99\n")
    (fake / "docker").chmod(0o755)
    return subprocess.run(
        [
            python39() or sys.executable,
            str(root / "usr/bin/ospool-ep"),
            "launch",
            "--config",
            str(cfg),
            "--engine",
            "docker",
            "--print",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"PATH": f"{fake}:/usr/bin:/bin"},
    )


# ---------------------------------------------------------------------------
# Standard library only, Python 3.9 (no package build needed)


def _host_files() -> list[Path]:
    return [*launcher_files(), LAUNCHER]


def test_the_launcher_imports_only_the_standard_library() -> None:
    """No jinja2, htcondor, classad2, requests: the RPM host has none of them.
    ``rpm/ospool-ep`` and every ``ospool_ep`` module it reaches, at any depth."""
    done = import_closure(LAUNCHER)
    assert done.returncode == 0, done.stderr
    assert "entrypoint/ospool_ep/host/launch.py" in done.stdout.splitlines()
    assert "entrypoint/ospool_ep/__init__.py" in done.stdout.splitlines()


def test_the_launcher_reaches_only_host_the_shared_inputs_and_the_report() -> None:
    """The boundary the folders show (issue 10): the launcher is ``host/``, plus the
    pilot's own value parsers, variable table and pool names (one rule per variable,
    not a copy), findings and exit codes. Nothing of the container runtime."""
    done = import_closure(LAUNCHER)
    assert done.returncode == 0, done.stderr
    package = "entrypoint/ospool_ep/"
    reached = {line.removeprefix(package) for line in done.stdout.splitlines()}
    outside_host = {path for path in reached if not path.startswith("host/")}
    assert outside_host == {
        "__init__.py",
        "exitcodes.py",
        "findings.py",
        "inputs/__init__.py",
        "inputs/pools.py",
        "inputs/values.py",
        "inputs/variables.py",
    }


def test_the_spec_version_fallback_is_the_package_version() -> None:
    match = re.search(r"%global ospool_version (\S+)\}", SPEC.read_text())
    assert match and match[1] == __version__


def test_vermin_finds_nothing_newer_than_python_3_9() -> None:
    """vermin (pip install vermin) reads the files the RPM ships, and the tool
    that lists them (``make rpm`` runs it with EL9's python3); the real
    Python 3.9 runs, where present, are in test_launch_units and above."""
    vermin = venv_tool("vermin")
    result = subprocess.run(
        [vermin, "--target=3.9-", "--no-tips", "--violations", *map(str, _host_files()), str(TOOL)],
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
    copy_modules(launcher_files(), tmp_path)
    imports = "; ".join(f"import {module_name(file)}" for file in launcher_files())
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
