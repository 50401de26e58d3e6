"""OSG's ``ospool-ep`` RPM as a site has it: its config files, and a stand-in package.

The corpus (``fixtures/upstream_rpm/*.cfg``) holds files shaped like OSG's
shipped ``/etc/osg/ospool-ep.cfg`` with typical site edits. The stand-in
package has OSG's Name, Version, Release and file list (opensciencegrid/
Software-Redhat ``ospool-ep/osg/ospool-ep.spec``: ``ospool-ep-1.0-5%{?dist}``,
noarch, no Epoch; the cfg ``%config(noreplace)``), with contents written
here, so an upgrade can be tried with real rpm tooling.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from paths import FIXTURES

CORPUS = FIXTURES / "upstream_rpm"
UPSTREAM_VERSION = "1.0"
UPSTREAM_RELEASE = "5.osg23.el9"
"""OSG builds ``Release: 5%{?dist}`` with dist ``.osg23.el9`` (its 23 series, EL9)."""
UPSTREAM_LAUNCHER = "/usr/sbin/start_ospool_ep_container.sh"
UPSTREAM_UNIT = "/usr/lib/systemd/system/ospool-ep.service"


def corpus() -> list[Path]:
    return sorted(CORPUS.glob("*.cfg"))


def fill(text: str, *, token: Path, scratch: Path) -> str:
    return text.replace("@TOKEN@", str(token)).replace("@SCRATCH@", str(scratch))


def as_shipped() -> str:
    """``shipped.cfg`` as OSG's RPM installs it: the site's three values not yet given."""
    text = (CORPUS / "shipped.cfg").read_text()
    text = re.sub(r"(?m)^(GLIDEIN_Site|GLIDEIN_ResourceName)=.*$", r"\1=", text)
    return text.replace("TOKEN_LOCATION=@TOKEN@", "TOKEN_LOCATION=/etc/osg/ospool-ep.tkn")


_SPEC = """\
Name: ospool-ep
Version: {version}
Release: {release}
Summary: Stand-in for OSG's ospool-ep RPM (tests)
License: Unknown
BuildArch: noarch
Source0: ospool-ep.service
Source1: start_ospool_ep_container.sh
Source2: ospool-ep.cfg

%description
Stand-in with the name, version, release and files of OSG's package.

%prep
%build
%install
install -D -m 0644 %{{SOURCE0}} %{{buildroot}}/usr/lib/systemd/system/ospool-ep.service
install -D -m 0755 %{{SOURCE1}} %{{buildroot}}/usr/sbin/start_ospool_ep_container.sh
install -D -m 0644 %{{SOURCE2}} %{{buildroot}}/etc/osg/ospool-ep.cfg

%files
/usr/lib/systemd/system/ospool-ep.service
%config(noreplace) /etc/osg/ospool-ep.cfg
/usr/sbin/start_ospool_ep_container.sh
"""

_UNIT = """\
[Unit]
Description=stand-in for OSG's unit
[Service]
EnvironmentFile=/etc/osg/ospool-ep.cfg
ExecStart=/usr/sbin/start_ospool_ep_container.sh
ExecStop=-/usr/bin/docker container stop -t 120 ospool-ep-container
[Install]
WantedBy=multi-user.target
"""


def build_standin(top: Path) -> Path:
    """rpmbuild the stand-in under ``top``; the package's path."""
    sources = top / "SOURCES"
    sources.mkdir(parents=True)
    (sources / "ospool-ep.service").write_text(_UNIT)
    (sources / "start_ospool_ep_container.sh").write_text("#!/bin/bash\nexec docker run ...\n")
    (sources / "ospool-ep.cfg").write_text(as_shipped())
    spec = top / "ospool-ep.spec"
    spec.write_text(_SPEC.format(version=UPSTREAM_VERSION, release=UPSTREAM_RELEASE))
    rpmbuild(top, spec)
    return top / "RPMS" / "noarch" / f"ospool-ep-{UPSTREAM_VERSION}-{UPSTREAM_RELEASE}.noarch.rpm"


def rpmbuild(top: Path, spec: Path) -> None:
    nodeps = [] if rpm("-q", "rpm").returncode == 0 else ["--nodeps"]
    subprocess.run(
        ["rpmbuild", "-bb", "--quiet", *nodeps, "--define", f"_topdir {top}", str(spec)],
        check=True,
        timeout=300,
        capture_output=True,
        env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": str(top)},
    )


def rpm(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["rpm", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": os.environ.get("HOME", "/")},
    )


def in_root(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``rpm`` on the database and files of ``root`` (an empty host, made here).

    ``--noscripts``: the scriptlets would run chrooted into ``root``, which has
    no shell; what they do is tested from the package's ``--scripts``.
    ``--nodeps``: ``root`` has no python3, docker or systemd packages.
    """
    return rpm("--root", str(root), "--dbpath", "/var/lib/rpm", *args)


def install_args() -> tuple[str, ...]:
    return ("--nodeps", "--noscripts")


def vercmp(a: str, b: str) -> int:
    """rpm's own EVR order (librpm's rpmvercmp with the epoch, as dnf/libsolv use it)."""
    done = rpm("--eval", f'%{{lua: print(rpm.vercmp("{a}", "{b}"))}}')
    assert done.returncode == 0, done.stderr
    return int(done.stdout.strip())


def token_and_scratch(token: Path, scratch: Path) -> None:
    """A site's token file and scratch directory as the launcher wants them: usable by
    the pilot's uid 1000 (owned by it when we are root, else open to it)."""
    token.write_text("a.b.c\n")
    scratch.mkdir()
    if os.geteuid() == 0:
        os.chown(token, 1000, 1000)
        os.chown(scratch, 1000, 1000)
        token.chmod(0o600)
    else:
        token.chmod(0o644)
        scratch.chmod(0o777)
