"""The job image's OS as OSG's pilot names it (OSG_OS_*), read from real image trees."""

from __future__ import annotations

from pathlib import Path

import pytest

from ospool_ep.detect.osrelease import JobOs, job_os, parse_os_release, read_job_os

ROCKY_9 = (
    'NAME="Rocky Linux"\nVERSION="9.4 (Blue Onyx)"\nID="rocky"\n'
    'ID_LIKE="rhel centos fedora"\nVERSION_ID="9.4"\n'
)
ALMA_8 = 'NAME="AlmaLinux"\nID="almalinux"\nID_LIKE="rhel centos fedora"\nVERSION_ID="8.10"\n'
UBUNTU = 'NAME="Ubuntu"\nVERSION_ID="22.04"\nID=ubuntu\nID_LIKE=debian\n'
DEBIAN_TESTING = 'PRETTY_NAME="Debian GNU/Linux forky/sid"\nNAME="Debian GNU/Linux"\nID=debian\n'
SUSE = 'NAME="openSUSE Leap"\nVERSION_ID="15.5"\nID="opensuse-leap"\nID_LIKE="suse opensuse"\n'


def image(tmp_path: Path, os_release: str, *, debian_version: str | None = None) -> Path:
    root = tmp_path / "image"
    (root / "usr/lib").mkdir(parents=True)
    (root / "etc").mkdir()
    (root / "usr/lib/os-release").write_text(os_release)
    # As distributions ship it: a relative link into the image's own /usr.
    (root / "etc/os-release").symlink_to("../usr/lib/os-release")
    if debian_version is not None:
        (root / "etc/debian_version").write_text(debian_version + "\n")
    return root


@pytest.mark.parametrize(
    ("os_release", "debian_version", "expected"),
    [
        (ROCKY_9, None, ("RHEL", "9")),
        (ALMA_8, None, ("RHEL", "8")),
        (UBUNTU, "bookworm/sid", ("UBUNTU", "22")),
        ('ID=debian\nVERSION_ID="12"\n', "12.5", ("DEBIAN", "12")),
        (DEBIAN_TESTING, "forky/sid", ("DEBIAN", "forky_sid")),
        (SUSE, None, ("SUSE", "15")),
        ("ID=alpine\nVERSION_ID=3.20.1\n", None, ("ALPINE", "3")),
        ("", None, ("Unknown", "0")),
    ],
    ids=["rocky9", "alma8", "ubuntu", "debian12", "debian-testing", "suse", "other", "none"],
)
def test_the_image_os_is_named_as_osgs_pilot_names_it(
    tmp_path: Path, os_release: str, debian_version: str | None, expected: tuple[str, str]
) -> None:
    """osg-flock's advertise-userenv: RHEL/DEBIAN/UBUNTU/SUSE and the major version only;
    Debian's version from /etc/debian_version, as upstream reads it."""
    found = read_job_os(image(tmp_path, os_release, debian_version=debian_version), kernel="6.1.0")
    assert (found.name, found.version) == expected
    assert found.attributes()["OSG_OS_STRING"] == f"{expected[0]} {expected[1]}"
    assert found.attributes()["OSG_OS_KERNEL"] == "6.1.0"


def test_an_absolute_link_is_followed_inside_the_image_not_on_the_pilot(tmp_path: Path) -> None:
    root = image(tmp_path, ROCKY_9)
    (root / "etc/os-release").unlink()
    (root / "etc/os-release").symlink_to("/usr/lib/os-release")
    assert read_job_os(root, kernel="k").name == "RHEL"


def test_an_image_without_release_files_is_unknown(tmp_path: Path) -> None:
    assert read_job_os(tmp_path, kernel="") == JobOs(name="Unknown", version="0", kernel="Unknown")


def test_odd_characters_from_the_image_never_reach_the_ad() -> None:
    found = job_os(
        parse_os_release('ID="we$ird\\"os"\nVERSION_ID="1$(x).2"\n'),
        debian_version=None,
        kernel="6.1 $(evil)",
    )
    for key, value in found.attributes().items():
        plain = value.replace(" ", "", 1) if key.endswith("STRING") else value
        assert all(ch.isalnum() or ch in "._+~-" for ch in plain), (key, value)


def test_os_release_values_follow_shell_quoting() -> None:
    fields = parse_os_release("# comment\nNAME='Some OS'\nID=some\nbad line\nVERSION_ID=\"1.2\"\n")
    assert fields == {"NAME": "Some OS", "ID": "some", "VERSION_ID": "1.2"}
