"""`check` names the installed HTCondor's version and warns below the OSPool's series (SPEC 10).

The Debian-stable image carries HTCondor 23.9 (and no Apptainer); the default image 25.
The version comes from HTCondor's ``condor_version`` tool, never from a daemon;
the programs here are small scripts that print what HTCondor's do.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ospool_ep.findings import Finding, Findings, Status
from ospool_ep.pilot import plan

DEBIAN_25 = "$CondorVersion: 25.14.1 2026-10-16 PackageID: 25.14.1+dfsg-1 $\n"
DEBIAN_23 = "$CondorVersion: 23.9.6 2026-07-12 PackageID: 23.9.6+dfsg-2.1+b10 $\n"
WHEEL_25 = "$CondorVersion: 25.14.1 2026-09-24 BuildID: UW_Python_Wheel_Build $"


@pytest.mark.parametrize(
    ("text", "version"),
    [
        (DEBIAN_25 + "$CondorPlatform: X86_64-Debian_ $\n", (25, 14, 1)),
        (DEBIAN_23, (23, 9, 6)),
        (WHEEL_25, (25, 14, 1)),
        ("", None),
        ("condor_master: unknown option\n", None),
    ],
)
def test_the_version_is_read_from_htcondors_own_version_line(
    text: str, version: tuple[int, int, int] | None
) -> None:
    assert plan.parse_condor_version(text) == version


def daemons(tmp_path: Path, version_says: str, *, exit_code: int = 0) -> Path:
    """The two daemons (never run by the check) and ``condor_version``."""
    bin_dir = tmp_path / "sbin"
    bin_dir.mkdir()
    for name, text in (
        ("condor_master", '#!/bin/sh\necho started >>"$0.ran"\nsleep 600\n'),
        ("condor_startd", "#!/bin/sh\nexit 0\n"),
        ("condor_version", f"#!/bin/sh\nprintf '%s' '{version_says}'\nexit {exit_code}\n"),
    ):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    return bin_dir


def htcondor_finding(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, version_says: str, *, exit_code: int = 0
) -> Finding:
    bin_dir = daemons(tmp_path, version_says, exit_code=exit_code)
    monkeypatch.setenv("PATH", str(bin_dir))
    findings = Findings()
    plan.check_htcondor_installed(findings)
    assert not (bin_dir / "condor_master.ran").exists(), "the check must never start a daemon"
    (finding,) = findings
    return finding


def test_htcondor_25_passes_with_its_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    finding = htcondor_finding(tmp_path, monkeypatch, DEBIAN_25)
    assert finding.status is Status.PASS
    assert finding.message == "25.14.1: condor_master and condor_startd found"


def test_a_debian_stable_htcondor_23_is_a_warning_that_names_the_newer_build(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not a failure: the stable build runs jobs; it says what it is and how to get 25."""
    finding = htcondor_finding(tmp_path, monkeypatch, DEBIAN_23)
    assert finding.status is Status.WARN
    assert finding.message == "23.9.6: older than 25, the series the OSPool runs"
    assert "make image DEBIAN_SUITE=forky" in finding.fix


def test_an_htcondor_that_gives_no_version_still_passes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    finding = htcondor_finding(tmp_path, monkeypatch, "no version here", exit_code=1)
    assert finding.status is Status.PASS
    assert finding.message == "condor_master and condor_startd found"
