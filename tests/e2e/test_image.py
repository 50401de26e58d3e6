"""Validation inside the image, with Debian's HTCondor bindings (23.9), not the host's PyPI 25.

The two differ (23.9 raises SyntaxError where 25 raises ClassAdException), so
the expression and attribute checks are run where the pilot really runs.
Each case is `ospool-ep check` in a throwaway container with no network.
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


def check_in_image(
    env: dict[str, str], *, attributes: str | None, tmp_path: Path
) -> tuple[int, str]:
    now = int(time.time())
    base = {
        "GLIDEIN_Site": "Image Site",
        "GLIDEIN_ResourceName": "Image Resource",
        "TOKEN": token(iat=now, exp=now + 30 * 86400),
        "MIN_DISK_GB": "0",
    }
    argv = ["podman", "run", "--rm", "--network", "none", "--user", "1000:1000"]
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
    the shipped file must hold every name of the image's HTCondor (23.9), not only
    those of the host's PyPI bindings (25)."""
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
