"""Checks of single values in the host's config file, standard library only (SPEC 4.1, 11).

The launcher runs on the host, where only the distribution's ``python3`` is
installed (EL9: Python 3.9; no HTCondor bindings, no jinja2), so it cannot
import :mod:`ospool_ep.env_values`, which needs ``classad2``. The rules here
are the pilot's own rules restated without ClassAd parsing; the tests compare
both on the same sample values, so they cannot drift apart unnoticed. Where a
rule needs HTCondor (a START expression) only the part that needs nothing is
checked here, and the pilot checks the rest when it starts (exit 78).

Every check takes the stripped value and raises :class:`Invalid` (what is
wrong, how to fix it) or returns None. No I/O. Keep this module Python 3.9
compatible: ``tests/test_launch_rpm.py`` checks it with vermin and python3.9.
"""

from __future__ import annotations

import ipaddress
import re
import urllib.parse
from collections.abc import Callable

Check = Callable[[str], None]


class Invalid(ValueError):
    def __init__(self, message: str, fix: str) -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix


TEN_YEARS_H = 10 * 365 * 24
"""The pilot's upper bound of every duration (settings.TEN_YEARS_H)."""

PILOT_TRUE = frozenset({"true", "1", "yes"})
PILOT_FALSE = frozenset({"false", "0", "no"})
# Upstream's RPM script treated y/yes/t/true/on/1 as true and anything else as
# false; its own keys (BIND_MOUNT_CVMFS, PROVIDE_NVIDIA_GPU) keep those words,
# but anything that is neither is an error here instead of a silent "false".
HOST_TRUE = frozenset({"y", "yes", "t", "true", "on", "1"})
HOST_FALSE = frozenset({"n", "no", "f", "false", "off", "0"})

POOL_NAMES = ("ospool", "prod-ospool", "itb-ospool", "prod-path-facility", "dev-path-facility")
"""The pool names the pilot knows (pools.POOL_NAMES)."""

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# The pilot's IPv6 zone rule (env_values._ZONE): an interface name, IFNAMSIZ - 1 bytes.
_ZONE = re.compile(r"[A-Za-z0-9_.-]{1,15}")
_HOST_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")
_PROJECT = re.compile(r"[A-Za-z0-9._-]+")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_REPO = re.compile(r"[a-z0-9][a-z0-9.-]*\.[a-z0-9.-]*[a-z0-9]")
_CVMFS_PROXY = re.compile(r"[A-Za-z0-9.:/_;|@\[\]%-]+")
_WALLTIME = re.compile(r"(?:(?:(?P<d>[0-9]+)-)?(?P<h>[0-9]+):)?(?P<m>[0-9]+):(?P<s>[0-9]+)")
_IMAGE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/:@+-]*")
_CONTAINER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def shown(value: str, limit: int = 60) -> str:
    """A value for a message: repr'd (control characters visible) and cut."""
    return repr(value if len(value) <= limit else value[:limit] + "...")


def has_control(text: str) -> bool:
    return bool(_CONTROL.search(text))


def config_unsafe_reason(text: str) -> str | None:
    """Why ``text`` may not go into HTCondor config (classad_text.config_unsafe_reason)."""
    if "\n" in text or "\r" in text:
        return "contains a line break"
    if _CONTROL.search(text):
        return "contains a control character"
    if "$" in text:
        return "contains '$', which HTCondor would expand as a macro"
    if "\\" in text:
        return "contains a backslash"
    return None


# ---------------------------------------------------------------------------
# Generic shapes


def parse_pilot_bool(value: str) -> bool:
    word = value.lower()
    if word in PILOT_TRUE:
        return True
    if word in PILOT_FALSE:
        return False
    raise Invalid(f"{shown(value)} is not a boolean", "use true/false, yes/no or 1/0")


def parse_host_bool(value: str) -> bool:
    word = value.lower()
    if word in HOST_TRUE:
        return True
    if word in HOST_FALSE:
        return False
    raise Invalid(f"{shown(value)} is not a boolean", "use true or false")


def parse_int(value: str, *, minimum: int, maximum: int | None = None, unit: str = "") -> int:
    if not re.fullmatch(r"[+-]?[0-9]+", value):
        raise Invalid(f"{shown(value)} is not a whole number", f"use an integer {unit}".rstrip())
    number = int(value)
    if number < minimum or (maximum is not None and number > maximum):
        bound = f"between {minimum} and {maximum}" if maximum is not None else f">= {minimum}"
        raise Invalid(f"{number} is out of range", f"use an integer {bound} {unit}".rstrip())
    return number


def int_in(minimum: int, maximum: int | None = None, unit: str = "") -> Check:
    def check(value: str) -> None:
        parse_int(value, minimum=minimum, maximum=maximum, unit=unit)

    return check


def one_of(*choices: str) -> Check:
    def check(value: str) -> None:
        if value not in choices:
            raise Invalid(f"{shown(value)} is not one of {', '.join(choices)}", "pick one")

    return check


def abs_path(value: str) -> None:
    reason = config_unsafe_reason(value)
    if reason or any(ch.isspace() or ch in "\"'" for ch in value):
        raise Invalid(f"{shown(value)} {reason or 'contains spaces or quotes'}", "use a plain path")
    if not value.startswith("/"):
        raise Invalid(f"{shown(value)} is not an absolute path", "use a path starting with /")
    if ":" in value or "," in value:
        # A ':' would split the engine's -v SRC:DST:OPTIONS argument.
        raise Invalid(f"{shown(value)} contains ':' or ','", "use a path without ':' or ','")


# ---------------------------------------------------------------------------
# The pilot's variables (env_values.parse_*), without ClassAd parsing


def ad_string(value: str) -> None:
    """GLIDEIN_Site, GLIDEIN_ResourceName (env_values.parse_ad_string)."""
    if not value:
        raise Invalid("is empty", "set it to the name registered in OSG Topology")
    if len(value) > 128:
        raise Invalid(f"is {len(value)} characters long", "use at most 128 characters")
    if '"' in value or "'" in value:
        raise Invalid("contains a quote", "remove the quotes; the value is quoted for you")
    reason = config_unsafe_reason(value)
    if reason:
        raise Invalid(reason, "use the plain name as registered in OSG Topology")
    if not value.isprintable():
        raise Invalid("contains non-printable characters", "use printable characters only")


def expression_text(value: str) -> None:
    """GLIDEIN_Start_Extra: what can be judged without HTCondor (the pilot parses it)."""
    reason = config_unsafe_reason(value) if value else "is empty"
    if reason:
        raise Invalid(
            f"{shown(value)} {reason}",
            "give one ClassAd boolean expression on one line, e.g. "
            'TARGET.ProjectName == "MyProject"',
        )


def project_name(value: str) -> None:
    if not _PROJECT.fullmatch(value):
        raise Invalid(
            f"{shown(value)} is not a project name",
            "use letters, digits, '.', '_' and '-' only, as in the OSPool project list",
        )


def host(text: str) -> None:
    """A DNS name or an IP address literal (IPv6 in brackets, optionally ``%zone``)."""
    if text.startswith("[") and text.endswith("]"):
        address, percent, zone = text[1:-1].partition("%")
        uri_escaped = zone.startswith("25") and len(zone) > 2
        if percent and (uri_escaped or not _ZONE.fullmatch(zone)):
            raise Invalid(
                f"{shown(text)} has an invalid zone (interface) after '%'",
                "write the interface name as it is, e.g. [fe80::1%eth0] "
                "(letters, digits, '.', '_', '-', at most 15 characters; no %25 escape)",
            )
        try:
            ipaddress.IPv6Address(address)
        except ValueError:
            raise Invalid(f"{shown(text)} is not an IPv6 address", "write [addr]") from None
        return
    try:
        ipaddress.IPv4Address(text)
    except ValueError:
        labels = text.rstrip(".").split(".")
        if not text or len(text) > 253 or not all(_HOST_LABEL.fullmatch(lab) for lab in labels):
            raise Invalid(
                f"{shown(text)} is not a valid host name", "use a DNS name or an IP address"
            ) from None


def host_port(value: str, *, port_required: bool = False) -> tuple[str, int | None]:
    match = re.fullmatch(r"(\[[^\]]*\]|[^:\[\]]*)(?::([0-9]{1,5}))?", value)
    if not match:
        raise Invalid(f"{shown(value)} is not host[:port]", "write host or host:port")
    host(match.group(1))
    port = int(match.group(2)) if match.group(2) else None
    if port is not None and not 0 < port < 65536:
        raise Invalid(f"port {port} is out of range", "use a port between 1 and 65535")
    if port_required and port is None:
        raise Invalid(f"{shown(value)} has no port", "write host:port, e.g. squid.example.edu:3128")
    return match.group(1), port


def collector_list(value: str) -> None:
    items = [item for item in re.split(r"[\s,]+", value) if item]
    if not items:
        raise Invalid("names no host", "write host[:port], several separated by commas")
    for item in items:
        host_port(item)


def pool(value: str) -> None:
    if value.lower() in POOL_NAMES:
        return
    if "." not in value and ":" not in value:
        raise Invalid(
            f"{shown(value)} is not a known pool",
            f"use one of {', '.join(POOL_NAMES)}, or a central manager's host[:port]",
        )
    host_port(value)


def proxy_url(value: str) -> None:
    """OSG_SQUID_LOCATION: ``host:port`` or ``http://host:port``."""
    if "@" in value:
        raise Invalid(
            "contains credentials (user@)",
            "give the proxy as host:port; jobs use it unauthenticated",
        )
    text = value
    if "://" in text:
        scheme, _, rest = text.partition("://")
        if scheme.lower() != "http":
            raise Invalid(f"scheme {scheme!r} is not supported", "use http://host:port")
        text = rest.rstrip("/")
    host_port(text, port_required=True)


def http_url(value: str, *, for_config: bool = False) -> None:
    reason = config_unsafe_reason(value if for_config else value.replace("$", ""))
    if reason or any(ch.isspace() or ch in "\"'" for ch in value):
        raise Invalid(
            f"is not a plain URL: {reason or 'contains spaces or quotes'}",
            "write http://host[:port]/path or https://... without quotes",
        )
    try:
        parsed = urllib.parse.urlsplit(value)
        parsed.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        parsed = urllib.parse.urlsplit("")
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise Invalid("is not an http(s) URL", "write http://host[:port]/path or https://...")


def registry_mirror(value: str) -> None:
    if "://" in value:
        http_url(value, for_config=True)
    else:
        host_port(value)


def repos(value: str) -> None:
    names = [name.strip("\"'") for name in re.split(r"[\s,]+", value)]
    names = [name for name in names if name]
    if not names:
        raise Invalid("names no repository", "list repos like oasis.opensciencegrid.org")
    for name in names:
        if not _REPO.fullmatch(name):
            raise Invalid(
                f"{shown(name)} is not a CVMFS repository name",
                "use fully qualified names like singularity.opensciencegrid.org",
            )


def cvmfs_proxy(value: str) -> None:
    if not _CVMFS_PROXY.fullmatch(value):
        raise Invalid(
            f"{shown(value)} is not a CVMFS proxy list",
            "use cvmfs syntax, e.g. http://squid:3128;DIRECT (no spaces or quotes)",
        )


def cvmfs_quota(value: str) -> None:
    if parse_int(value, minimum=-1, unit="MB (-1 for no limit)") == 0:
        raise Invalid("0 is not a quota", "use a size in MB, or -1 for no limit")


def parse_walltime(value: str) -> int:
    """Seconds, or Slurm-style ``[[D-]HH:]MM:SS``."""
    match = _WALLTIME.fullmatch(value)
    if match:
        days, hours = int(match["d"] or 0), int(match["h"] or 0)
        seconds = ((days * 24 + hours) * 60 + int(match["m"])) * 60 + int(match["s"])
        if seconds > 0:
            return seconds
    elif re.fullmatch(r"[0-9]+", value) and int(value) > 0:
        return int(value)
    raise Invalid(
        f"{shown(value)} is not a walltime", "use seconds (> 0) or [[D-]HH:]MM:SS, e.g. 1-12:00:00"
    )


def walltime(value: str) -> None:
    parse_walltime(value)


def number(value: str) -> None:
    if not re.fullmatch(r"[0-9]+(\.[0-9]+)?", value):
        raise Invalid(f"{shown(value)} is not a number", "use a number >= 0 GB")


def log_format(value: str) -> None:
    if value.lower() not in ("text", "json"):
        raise Invalid(f"{shown(value)} is not a log format", "use text or json")


def bind_list(value: str) -> None:
    """SINGULARITY_BIND_EXTRA: comma-separated ``src[:dst[:ro|rw]]``, absolute paths."""
    for spec in (item.strip() for item in value.split(",")):
        if not spec:
            continue
        parts = spec.split(":")
        if len(parts) > 3 or (len(parts) == 3 and parts[2] not in ("ro", "rw")):
            raise Invalid(f"{shown(spec)} is not src[:dst[:ro|rw]]", "e.g. /data:/data:ro")
        for path in parts[:2]:
            reason = config_unsafe_reason(path)
            if reason or any(ch.isspace() or ch in "\"'" for ch in path):
                raise Invalid(
                    f"{shown(path)} {reason or 'contains spaces or quotes'}", "plain paths"
                )
            if not path.startswith("/"):
                raise Invalid(f"{shown(path)} is not an absolute path", "start it with /")


def job_env(value: str) -> None:
    """EXTRA_JOB_ENV: space-separated ``NAME=VALUE`` pairs."""
    for item in value.split():
        name, sep, text = item.partition("=")
        if not sep or not _ENV_NAME.fullmatch(name):
            raise Invalid(f"{shown(item)} is not NAME=VALUE", "write NAME=VALUE pairs with spaces")
        if name.upper().startswith("_CONDOR_") or name == "TOKEN":
            raise Invalid(f"{name} may not be set for jobs", "remove it from EXTRA_JOB_ENV")
        reason = config_unsafe_reason(text)
        if reason or any(ch in text for ch in "\"'"):
            raise Invalid(
                f"the value of {name} {reason or 'contains a quote'}",
                "use plain values without quotes, '$' or backslashes",
            )


def condor_knob_value(value: str) -> None:
    """``_CONDOR_<KNOB>``: HTCondor's own syntax; one line is all that can be asked."""
    if "\n" in value or "\r" in value or _CONTROL.search(value):
        raise Invalid("contains a control character", "write the value on one line")


# ---------------------------------------------------------------------------
# The launcher's own keys


def image(value: str) -> None:
    if not _IMAGE.fullmatch(value) or value.startswith("-"):
        raise Invalid(
            f"{shown(value)} is not an image reference",
            "write [registry/]name[:tag][@digest], e.g. hub.example.org/osg/ospool-ep:1.0",
        )


def container_name(value: str) -> None:
    if not _CONTAINER_NAME.fullmatch(value) or len(value) > 128:
        raise Invalid(
            f"{shown(value)} is not a container name",
            "use letters, digits, '_', '.' and '-', starting with a letter or digit",
        )


def apparmor_profile(value: str) -> None:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", value):
        raise Invalid(f"{shown(value)} is not an AppArmor profile name", "e.g. docker-ep")
