"""Validation inside the image, with its Debian HTCondor bindings, not the host's PyPI 25.

The image is built in two variants (Dockerfile, "Variants"): HTCondor 25 with
Apptainer, and Debian stable (HTCondor 23.9, no Apptainer). Their bindings differ
(23.9 raises SyntaxError where 25 raises ClassAdException), so the expression and
attribute checks are run where the pilot really runs. Each case is `ospool-ep
check` (or a command) in a throwaway container with no network. The variant
tests read the image's ``org.ospool-ep.*`` labels and hold the image to them.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pool  # tests/support/pool.py (tests/ is not a package)
import pytest
from jwt_factory import token  # tests/jwt_factory.py
from paths import REPO

_reason = pool.unavailable_reason()
pytestmark = [
    pytest.mark.container,
    pytest.mark.skipif(_reason is not None, reason=f"container pool unavailable: {_reason}"),
]


def podman(*argv: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    environ = {**os.environ, "CONTAINERS_CONF": str(pool.CONTAINERS_CONF)}
    return subprocess.run(
        ["podman", *argv], capture_output=True, text=True, timeout=timeout, env=environ, check=False
    )


def label(name: str) -> str:
    result = podman("image", "inspect", "--format", f'{{{{index .Labels "{name}"}}}}', pool.IMAGE)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().replace("<no value>", "")


UNMASK = ("--security-opt", "unmask=/proc/*")
"""The README's run option: Apptainer mounts the job's /proc (SPEC 7.6)."""


def has_apptainer() -> bool:
    """The variant the image says it is: an apptainer suite means Apptainer inside."""
    return bool(label("org.ospool-ep.apptainer-suite"))


def run_in_image(*command: str, options: tuple[str, ...] = ()) -> tuple[int, str]:
    argv = ["run", "--rm", "--network", "none", "--user", "1000:1000", *options]
    result = podman(*argv, "--entrypoint", command[0], pool.IMAGE, *command[1:], timeout=300)
    return result.returncode, result.stdout + result.stderr


def check_in_image(
    env: dict[str, str],
    *,
    attributes: str | None,
    tmp_path: Path,
    options: tuple[str, ...] = UNMASK,
) -> tuple[int, str]:
    now = int(time.time())
    base = {
        "GLIDEIN_Site": "Image Site",
        "GLIDEIN_ResourceName": "Image Resource",
        "TOKEN": token(iat=now, exp=now + 30 * 86400),
        "MIN_DISK_GB": "0",
    }
    argv = ["podman", "run", "--rm", "--network", "none", "--user", "1000:1000", *options]
    for name, value in {**base, **env}.items():
        argv += ["-e", f"{name}={value}"]
    if attributes is not None:
        extra = tmp_path / "extra-attributes.cfg"
        extra.write_text(attributes)
        extra.chmod(0o644)
        argv += ["-v", f"{extra}:/etc/osg/extra-attributes.cfg:ro"]
    argv += [pool.IMAGE, "check"]
    environ = {**os.environ, "CONTAINERS_CONF": str(pool.CONTAINERS_CONF)}
    result = subprocess.run(
        argv, capture_output=True, text=True, timeout=120, env=environ, check=False
    )
    return result.returncode, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("start_extra", "attributes", "culprit"),
    [
        ("(RequestCpus >", None, "GLIDEIN_Start_Extra"),
        ("1; b = 2", None, "GLIDEIN_Start_Extra"),
        ('"yes"', None, "GLIDEIN_Start_Extra"),
        ("foo(", None, "GLIDEIN_Start_Extra"),
        ("True", "GOOD = 1\nBAD = (1 +\n", "extra-attributes.cfg:2"),
        ("True", "X = 1; y = 2\n", "extra-attributes.cfg:1"),
        ("True", "START = True\n", "extra-attributes.cfg:1"),
    ],
    ids=[
        "unbalanced",
        "trailing-garbage",
        "string-constant",
        "open-call",
        "attr-unbalanced",
        "attr-trailing",
        "attr-knob",
    ],
)
def test_bad_expressions_are_config_errors_in_the_image_too(
    start_extra: str, attributes: str | None, culprit: str, tmp_path: Path
) -> None:
    """Exit 78 naming the culprit, no traceback: never 70 (which systemd would retry)."""
    code, output = check_in_image(
        {"GLIDEIN_Start_Extra": start_extra}, attributes=attributes, tmp_path=tmp_path
    )
    assert code == 78, output
    assert any(line.startswith("FAIL") and culprit in line for line in output.splitlines()), output
    assert "Traceback" not in output


def test_a_good_configuration_passes_check_in_the_image(tmp_path: Path) -> None:
    """With HTCondor's daemons present and a valid setup, every check passes: exit 0."""
    code, output = check_in_image(
        {"GLIDEIN_Start_Extra": 'TARGET.Owner =!= "mallory"'},
        attributes='KUBERNETES_NAMESPACE = "osg"\n',
        tmp_path=tmp_path,
    )
    assert code == 0, output
    assert "parsed by HTCondor" in output


def test_the_knob_list_holds_every_setting_of_the_images_htcondor() -> None:
    """The extra-attributes deny list (SPEC 5.4) is HTCondor's own list of settings:
    the shipped file must hold every name of the image's HTCondor (23.9 or 25 from
    Debian), not only those of the host's PyPI bindings (25)."""
    repo = REPO
    argv = [
        "podman", "run", "--rm", "--network", "none", "--user", "1000:1000",
        "-v", f"{repo / 'scripts'}:/src:ro",
        "-v", f"{repo / 'entrypoint' / 'ospool_ep' / 'inputs'}:/pkg:ro",
        "--entrypoint", "python3", pool.IMAGE,
        "/src/htcondor_knobs.py", "--check", "/pkg/htcondor_knobs.txt",
    ]  # fmt: skip
    environ = {**os.environ, "CONTAINERS_CONF": str(pool.CONTAINERS_CONF)}
    result = subprocess.run(
        argv, capture_output=True, text=True, timeout=120, env=environ, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


# ---------------------------------------------------------------------------
# The variant: what the labels say is what the image has


def test_the_image_has_what_its_variant_says() -> None:
    """HTCondor >= 25 and Apptainer >= 1.3 where built with an apptainer suite (SPEC 10);
    HTCondor 23.9 and no apptainer at all in the Debian-stable build; the Python
    dependencies import in both."""
    code, output = run_in_image(
        "python3", "-c", "import htcondor2, classad2, jinja2, requests, prometheus_client"
    )
    assert code == 0, output
    code, condor = run_in_image("condor_version")
    assert code == 0, condor
    major = int(condor.split("$CondorVersion: ", 1)[1].split(".", 1)[0])
    code, apptainer = run_in_image("sh", "-c", "apptainer version")
    if has_apptainer():
        assert major >= 25, condor
        assert code == 0, apptainer
        assert tuple(int(p) for p in apptainer.strip().split(".")[:2]) >= (1, 3), apptainer
    else:
        assert major == 23, condor
        assert code == 127, apptainer  # not installed


PLUGIN_ANSWERS = r"""
set -e
for plugin in $(condor_config_val FILETRANSFER_PLUGINS | tr ',' ' '); do
    case "$plugin" in *.py) ;; *) continue ;; esac
    [ "$(head -c 9 "$plugin")" = '#!/bin/sh' ] \
        || { echo "$plugin: not the answering script"; exit 1; }
    [ "$("$plugin" -classad)" = "$("$plugin.distrib" -classad)" ] \
        || { echo "$plugin: differs"; exit 1; }
    rc=0; "$plugin" -infile /nonexistent -outfile /tmp/ours || rc=$?
    packaged=0; "$plugin.distrib" -infile /nonexistent -outfile /tmp/packaged || packaged=$?
    [ "$rc" = "$packaged" ] && [ "$rc" != 0 ] && cmp /tmp/ours /tmp/packaged \
        || { echo "$plugin: exit $rc, not $packaged as packaged"; exit 1; }
    grep -q TransferError /tmp/ours && echo "$plugin: failed transfer reported"
    echo "$plugin ok"
done
"""


def test_pythons_transfer_plugins_answer_the_startd_without_python_and_run_as_before() -> None:
    """Each Python plugin of FILETRANSFER_PLUGINS (box, gdrive, onedrive) answers
    ``-classad`` as the packaged one does, from a sh script (0.3 CPU-s less each, at every
    start and reconfig), and a real transfer still runs the packaged plugin."""
    code, output = run_in_image("sh", "-c", PLUGIN_ANSWERS)
    assert code == 0, output
    assert output.count(" ok") == 3, output
    assert output.count("failed transfer reported") >= 2, output  # box, gdrive (onedrive: none)


def test_check_says_what_the_image_lacks_or_how_to_let_apptainer_run(tmp_path: Path) -> None:
    """Debian stable: a WARN naming HTCondor 23.9 and the build that has 25, no
    apptainer found, so JOB_CONTAINMENT=required fails (69) naming JOB_CONTAINMENT=none.
    With Apptainer but podman's default /proc mask: 69 and the run option that fixes
    it. With ``--security-opt unmask=/proc/*`` (the README's line): jobs contained."""
    code, output = check_in_image({}, attributes=None, tmp_path=tmp_path, options=())
    # JOB_CONTAINMENT=required (the default) where Apptainer cannot work: exit 69 (SPEC 7.6).
    assert code == 69, output
    if not has_apptainer():
        assert "WARN  HTCondor: 23.9." in output, output
        assert "DEBIAN_SUITE=forky" in output
        assert "WARN  Apptainer: none works (no apptainer in the image or in CVMFS)" in output
        assert "FAIL  Job containment:" in output and "JOB_CONTAINMENT=none" in output, output
        code, output = check_in_image(
            {"JOB_CONTAINMENT": "none"}, attributes=None, tmp_path=tmp_path
        )
        assert code == 0, output
        return
    assert "PASS  HTCondor: 25." in output, output
    assert "can't mount proc filesystem" in output, output
    assert "FAIL  Job containment:" in output, output
    assert "--security-opt unmask=/proc/*" in output
    code, output = check_in_image({}, attributes=None, tmp_path=tmp_path)
    assert code == 0, output
    assert "PASS  Apptainer: /usr/bin/apptainer ran a test container" in output, output
    assert "PASS  Job containment: every job runs in Apptainer" in output, output


def test_apptainer_runs_a_directory_image_as_uid_1000(tmp_path: Path) -> None:
    """The Apptainer-built directory image (as OSG publishes them on CVMFS), made from a
    docker archive without privileges, runs contained: the job's exit code comes back,
    the pilot's /tmp is not visible and Apptainer's init is the job's PID 1 (FACTS)."""
    if not has_apptainer():
        pytest.skip("the Debian-stable build has no Apptainer (its check says so)")
    archive = tmp_path / "image.tar"
    saved = podman(
        "save", "--format", "docker-archive", "-o", str(archive), pool.IMAGE, timeout=300
    )
    assert saved.returncode == 0, saved.stderr
    archive.chmod(0o644)
    tmp_path.chmod(0o755)
    script = (
        "set -e; cd /tmp; echo secret >/tmp/pilot-file;"
        " apptainer -q build --sandbox /tmp/image docker-archive:/in/image.tar 2>/dev/null;"
        " apptainer exec --contain --ipc --pid /tmp/image"
        " sh -c 'ls /tmp; echo pid1=$(cat /proc/1/comm); exit 3' || echo exit=$?"
    )
    code, output = run_in_image(
        "sh", "-c", script,
        options=("--cap-drop", "ALL", "--security-opt", "unmask=/proc/*",
                 "-v", f"{tmp_path}:/in:ro"),
    )  # fmt: skip
    assert code == 0, output
    assert "pid1=appinit" in output, output
    assert "exit=3" in output, output
    assert "pilot-file" not in output


def test_the_built_in_job_image_is_an_apptainer_sandbox_uid_1000_cannot_change() -> None:
    """Where the image has Apptainer: /usr/lib/ospool-ep/job-image (SPEC 7.6) exists, was
    built by Apptainer (/.singularity.d), has an empty /usr (the pilot's is bound at
    job time) and the mount points jobs need, and uid 1000 can write nowhere in it."""
    if not has_apptainer():
        pytest.skip("the Debian-stable build has no Apptainer, and so no job image")
    image = "/usr/lib/ospool-ep/job-image"
    script = (
        f"cd {image} && test -d .singularity.d && echo built-by-apptainer;"
        " echo usr=$(ls -A usr | wc -l);"
        " for d in srv cvmfs tmp var/tmp proc sys dev home; do test -d $d || echo missing=$d; done;"
        " test -f etc/ssl/certs/ca-certificates.crt && echo certs;"
        " find . -xdev -writable ! -type l ! -path ./tmp ! -path ./var/tmp | sed 's/^/writable=/';"
        " du -sk . | sed 's/\\t.*//; s/^/kb=/'"
    )
    code, output = run_in_image("sh", "-c", script)
    assert code == 0, output
    lines = output.split()
    assert {"built-by-apptainer", "usr=0", "certs"} <= set(lines), output
    assert not [line for line in lines if line.startswith(("missing=", "writable="))], output
    kb = int(next(line for line in lines if line.startswith("kb="))[3:])
    assert kb < 2048, f"the job image is {kb} KB: it should be a skeleton"
