"""Parsers for single values a site writes: each returns the typed value or raises Invalid.

One parser per value shape, shared by the pilot's settings (the container's
environment) and the host launcher (``/etc/osg/ospool-ep.cfg``), so a value
means the same in both places. Pure functions, no I/O. ``Invalid`` carries
what is wrong and how to fix it; the caller adds the variable's name (and the
file's line). Messages quote a value only when it is safe and short: never a
token, never a control character.

What needs HTCondor's ClassAd library (is a START clause a valid boolean
expression?) is not judged here: :mod:`ospool_ep.inputs.classad` wraps
:func:`parse_expression_text` with that check on the pilot's side.

Standard library only and Python 3.9 compatible: the launcher runs on the
host's ``python3`` (EL9: 3.9). ``tests/deploy/test_launch_rpm.py`` checks the
launcher's import closure with vermin and a real python3.9.
"""

from __future__ import annotations

import difflib
import ipaddress
import re
import urllib.parse
from pathlib import PurePosixPath


class Invalid(ValueError):
    def __init__(self, message: str, fix: str) -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix


# Booleans, as OSG's container and RPM read them (their is_true: y, yes, t, true,
# on, 1, any case), with the matching false words (SPEC 4.1). Upstream took
# anything else for false; here it is an error naming the variable.
TRUE_WORDS = frozenset({"y", "yes", "t", "true", "on", "1"})
FALSE_WORDS = frozenset({"n", "no", "f", "false", "off", "0"})

# Characters that could add, continue or alter a configuration line. Tab is
# allowed nowhere either: values are single-line text.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_HOST_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")
# An IPv6 zone is an interface name: Linux allows at most 15 bytes (IFNAMSIZ - 1).
_ZONE = re.compile(r"[A-Za-z0-9_.-]{1,15}")
_PROJECT = re.compile(r"[A-Za-z0-9._-]+")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_REPO = re.compile(r"[a-z0-9][a-z0-9.-]*\.[a-z0-9.-]*[a-z0-9]")
# cvmfs's proxy syntax: groups split by ';', load-balanced proxies by '|',
# each a URL, DIRECT or auto. default.local is sourced by a shell: keep it tame.
_CVMFS_PROXY = re.compile(r"[A-Za-z0-9.:/_;|@\[\]%-]+")
_WALLTIME = re.compile(r"(?:(?:(?P<d>[0-9]+)-)?(?P<h>[0-9]+):)?(?P<m>[0-9]+):(?P<s>[0-9]+)")
# A URL's characters (RFC 3986), less quotes and '$' (HTCondor config macros).
_PROXY_SETTING = re.compile(r"[A-Za-z0-9._~:/?#\[\]@!&()*+,;=%-]+")
_IMAGE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/:@+-]*")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def shown(value: str, limit: int = 60) -> str:
    """A value for an error message: repr'd (so control characters are visible) and cut."""
    text = value if len(value) <= limit else value[:limit] + "..."
    return repr(text)


def has_control(text: str) -> bool:
    return bool(_CONTROL.search(text))


def config_unsafe_reason(text: str) -> str | None:
    """Why ``text`` may not be written into an HTCondor config value, or None if safe.

    HTCondor's config language has no quoting: a newline starts a new knob, a
    trailing backslash continues the line, ``$(`` expands a macro. Such
    characters are refused, never escaped.
    """
    if "\n" in text or "\r" in text:
        return "contains a line break"
    if _CONTROL.search(text):
        return "contains a control character"
    if "$" in text:
        return "contains '$', which HTCondor would expand as a macro"
    if "\\" in text:
        return "contains a backslash"
    return None


def _plain_text_reason(text: str) -> str | None:
    """Why ``text`` is no plain path or URL: config-unsafe, or spaces and quotes."""
    reason = config_unsafe_reason(text)
    if reason is None and any(ch.isspace() or ch in "\"'" for ch in text):
        reason = "contains spaces or quotes"
    return reason


# ---------------------------------------------------------------------------
# Generic shapes


def parse_bool(raw: str) -> bool:
    """Every boolean variable and RPM key: true/false, yes/no, y/n, t/f, on/off, 1/0."""
    word = raw.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise Invalid(
        f"{shown(raw)} is not a boolean", "use true or false (or yes/no, y/n, t/f, on/off, 1/0)"
    )


def parse_int(raw: str, *, minimum: int, maximum: int | None = None, unit: str = "") -> int:
    text = raw.strip()
    if not re.fullmatch(r"[+-]?[0-9]+", text):
        raise Invalid(f"{shown(raw)} is not a whole number", f"use an integer {unit}".rstrip())
    value = int(text)
    if value < minimum or (maximum is not None and value > maximum):
        bound = f"between {minimum} and {maximum}" if maximum is not None else f">= {minimum}"
        raise Invalid(f"{value} is out of range", f"use an integer {bound} {unit}".rstrip())
    return value


def parse_number(raw: str, *, minimum: float, unit: str = "") -> float:
    text = raw.strip()
    if not re.fullmatch(r"[0-9]+(\.[0-9]+)?", text):
        raise Invalid(f"{shown(raw)} is not a number", f"use a number >= {minimum} {unit}".rstrip())
    value = float(text)
    if value < minimum:
        raise Invalid(f"{value:g} is below {minimum:g}", f"use a number >= {minimum:g} {unit}")
    return value


def parse_choice(raw: str, choices: tuple[str, ...], what: str, *, fold_case: bool = True) -> str:
    """One of ``choices``; with ``fold_case``, in any case and returned in lower case."""
    value = raw.strip().lower() if fold_case else raw.strip()
    if value not in choices:
        listed = ", ".join(choices[:-1]) + f" or {choices[-1]}"
        raise Invalid(f"{shown(raw)} is not {what}", f"use {listed}")
    return value


# ---------------------------------------------------------------------------
# Names and expressions


def parse_ad_string(raw: str) -> str:
    """A value published as a ClassAd string: site and resource names (SPEC 4.1)."""
    value = raw.strip()
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
    return value


EXPRESSION_FIX = (
    'give one ClassAd boolean expression on one line, e.g. TARGET.ProjectName == "MyProject"'
)


def parse_expression_text(raw: str) -> str:
    """A START clause, as far as it can be judged without HTCondor: one safe line.

    The pilot parses it with the ClassAd library too
    (:func:`ospool_ep.classad_text.parse_expression`).
    """
    value = raw.strip()
    reason = config_unsafe_reason(value) if value else "is empty"
    if reason:
        raise Invalid(f"{shown(value)} {reason}", EXPRESSION_FIX)
    return value


def _named(raw: str, pattern: re.Pattern[str], what: str, fix: str, longest: int = 0) -> str:
    """A name of the shape ``pattern`` (at most ``longest`` characters, if given)."""
    value = raw.strip()
    if not pattern.fullmatch(value) or 0 < longest < len(value):
        raise Invalid(f"{shown(value)} is not {what}", fix)
    return value


def parse_project_name(raw: str) -> str:
    return _named(
        raw,
        _PROJECT,
        "a project name",
        "use letters, digits, '.', '_' and '-' only, as in the OSPool project list",
    )


# ---------------------------------------------------------------------------
# Hosts and URLs


def _parse_ipv6_literal(text: str) -> str:
    """``[addr]`` or ``[addr%zone]`` with a plain interface name as zone (RFC 6874 names
    the zone; Python's ``ipaddress`` accepts any text after ``%``, HTCondor config not)."""
    address, percent, zone = text[1:-1].partition("%")
    # "%25eth0" is RFC 6874's URI spelling of "%eth0"; HTCondor reads no URI escapes.
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
    return text


def parse_host(text: str) -> str:
    """A DNS name or an IP address literal (IPv6 in brackets, optionally with a zone)."""
    if text.startswith("[") and text.endswith("]"):
        return _parse_ipv6_literal(text)
    try:
        ipaddress.IPv4Address(text)
    except ValueError:
        labels = text.rstrip(".").split(".")
        if not text or len(text) > 253 or not all(_HOST_LABEL.fullmatch(lab) for lab in labels):
            raise Invalid(
                f"{shown(text)} is not a valid host name", "use a DNS name or an IP address"
            ) from None
    return text


def parse_host_port(raw: str) -> tuple[str, int | None]:
    text = raw.strip()
    match = re.fullmatch(r"(\[[^\]]*\]|[^:\[\]]*)(?::([0-9]{1,5}))?", text)
    if not match:
        raise Invalid(f"{shown(text)} is not host[:port]", "write host or host:port")
    host = parse_host(match.group(1))
    port = int(match.group(2)) if match.group(2) else None
    if port is not None and not 0 < port < 65536:
        raise Invalid(f"port {port} is out of range", "use a port between 1 and 65535")
    return host, port


def parse_collector_list(raw: str) -> str:
    """``CONDOR_HOST``: one or more ``host[:port]``, comma or space separated."""
    items = [item for item in re.split(r"[\s,]+", raw.strip()) if item]
    if not items:
        raise Invalid("names no host", "write host[:port], several separated by commas")
    for item in items:
        parse_host_port(item)
    return ",".join(items)


def parse_pool(raw: str, *, known: tuple[str, ...]) -> str:
    """``POOL``: a pool's name (any case), or a central manager's ``host[:port]``.

    A single-label host (a Kubernetes service such as ``cm``) is a host (SPEC
    4.1; OSG's container took only names with a dot). A name so close to a
    pool's name that it is likely a typo is refused with the guess, unless a
    port shows it is a host.
    """
    value = raw.strip()
    if value.lower() in known:
        return value.lower()
    guess = difflib.get_close_matches(value.lower(), known, n=1, cutoff=0.82)
    if guess and "." not in value and ":" not in value:
        raise Invalid(
            f"{shown(value)} is not a known pool; did you mean {guess[0]}?",
            f"write POOL={guess[0]}, or host:port if {shown(value)} is a central manager",
        )
    try:
        parse_host_port(value)
    except Invalid as problem:
        raise Invalid(
            f"{shown(value)} is neither a known pool nor a central manager's host[:port] "
            f"({problem.message})",
            f"use one of {', '.join(known)}, or a central manager's host[:port]",
        ) from None
    return value


SQUID_PORT = 3128
"""The port of ``OSG_SQUID_LOCATION`` when none is written: OSG's convention
(osg-configure's squid module appends ``:3128``; squid's own default port).
OSG's container passed the bare name on to jobs' ``http_proxy``, where curl
would have tried port 1080."""


def parse_proxy_url(raw: str) -> str:
    """``OSG_SQUID_LOCATION``: ``host[:port]`` or ``http://host[:port]`` -> ``http://host:port``."""
    text = raw.strip()
    if "@" in text:
        raise Invalid(
            "contains credentials (user@)",
            "give the proxy as host:port; jobs use it unauthenticated",
        )
    if "://" in text:
        scheme, _, rest = text.partition("://")
        if scheme.lower() != "http":
            raise Invalid(f"scheme {scheme!r} is not supported", "use http://host:port")
        text = rest.rstrip("/")
    host, port = parse_host_port(text)
    return f"http://{host}:{port or SQUID_PORT}"


def parse_proxy_setting(raw: str) -> str:
    """``http_proxy``, ``https_proxy``, ``FTP_PROXY`` as a site sets them for its hosts
    (``http://proxy:3128``, ``proxy:3128``, with credentials or not): one plain word,
    passed on to jobs as it is."""
    text = raw.strip()
    reason = _plain_text_reason(text)
    if reason is None and not _PROXY_SETTING.fullmatch(text):
        reason = "has characters no URL has"
    if reason:
        raise Invalid(
            f"is not a plain proxy address: {reason}",
            "write http://host:port (or host:port) without quotes",
        )
    return text


def parse_http_url(raw: str, *, for_config: bool = False) -> str:
    """An http(s) URL. ``for_config``: it is written into HTCondor config, so no '$' either."""
    text = raw.strip()
    reason = _plain_text_reason(text if for_config else text.replace("$", ""))
    if reason:
        raise Invalid(
            f"is not a plain URL: {reason}",
            "write http://host[:port]/path or https://... without quotes",
        )
    try:
        parsed = urllib.parse.urlsplit(text)
        parsed.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        parsed = urllib.parse.urlsplit("")
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise Invalid("is not an http(s) URL", "write http://host[:port]/path or https://...")
    return text


def redact_credentials(text: str) -> str:
    """``http://user:pw@host`` -> ``http://***@host``, for showing proxy lists."""
    return re.sub(r"//[^/@;|]*@", "//***@", text)


def redact_url(url: str) -> str:
    """Scheme and host only: webhook paths and query strings often embed secrets."""
    parsed = urllib.parse.urlsplit(url)
    port = f":{parsed.port}" if parsed.port else ""
    hidden = "/..." if (parsed.path.strip("/") or parsed.query) else ""
    return f"{parsed.scheme}://{parsed.hostname}{port}{hidden}"


_REGISTRY_PATH = re.compile(r"(/[A-Za-z0-9._-]+)+/?")


def parse_registry_mirror(raw: str) -> str:
    """``APPTAINER_REGISTRY_MIRROR``: a registry ``host[:port][/namespace]``, as the
    ``location`` of a containers-registries.conf mirror (OSG's container writes it
    there), or an http(s) URL."""
    text = raw.strip()
    if "://" in text:
        return parse_http_url(text, for_config=True)
    slash = text.find("/")
    address, path = (text, "") if slash < 0 else (text[:slash], text[slash:])
    if path and not _REGISTRY_PATH.fullmatch(path):
        raise Invalid(
            f"{shown(text)} is not a registry location",
            "write host[:port][/namespace], e.g. mirror.example.org/dockerhub",
        )
    parse_host_port(address)
    return text


def parse_host_name(raw: str) -> str:
    """A host name or address without a port (``SYSLOG_HOST``, ``REGISTRY_HOST``)."""
    return parse_host(raw.strip())


DISTRIBUTION_EXAMPLE = "10%__htc/rocky:8 90%__htc/rocky:9"
_IMAGE_PATH = re.compile(r"[A-Za-z0-9._:/@+-]+")


def _distribution_entry(item: str) -> tuple[int, str]:
    """One ``N%__IMAGE`` of a distribution: N in 1..100, IMAGE a relative path under
    ``/cvmfs/singularity.opensciencegrid.org/``."""
    weight, sep, image = item.partition("%__")
    if not sep or not re.fullmatch(r"[0-9]{1,3}", weight) or not image:
        raise Invalid(
            f"{shown(item)} is not PERCENT%__IMAGE",
            f"write weighted images separated by blanks, e.g. {DISTRIBUTION_EXAMPLE}",
        )
    if not 1 <= int(weight) <= 100:
        raise Invalid(f"{shown(item)} has the weight {int(weight)}", "use a weight from 1 to 100")
    if not _IMAGE_PATH.fullmatch(image):
        raise Invalid(
            f"{shown(item)} names an image with characters no image path has",
            "use letters, digits and . _ : / @ + - only, e.g. htc/rocky:9",
        )
    if image.startswith("/") or ".." in image:
        raise Invalid(
            f"{shown(item)} names an image outside /cvmfs/singularity.opensciencegrid.org/",
            "give the image's path relative to /cvmfs/singularity.opensciencegrid.org/, "
            "e.g. htc/rocky:9",
        )
    return int(weight), image


def parse_image_distribution(raw: str) -> tuple[tuple[int, str], ...]:
    """``OSG_DEFAULT_CONTAINER_DISTRIBUTION[_GPU]``: blank-separated ``N%__IMAGE``
    entries (``10%__htc/rocky:8 90%__htc/rocky:9``), the weights of the default job
    images under ``/cvmfs/singularity.opensciencegrid.org/``; the pilot picks one at
    start. Weights are relative (they need not add up to 100: settings warns)."""
    entries = tuple(_distribution_entry(item) for item in raw.split())
    if not entries:
        raise Invalid("names no image", f"write weighted images, e.g. {DISTRIBUTION_EXAMPLE}")
    return entries


# ---------------------------------------------------------------------------
# CVMFS


def parse_repos(raw: str) -> tuple[str, ...]:
    """``CVMFSEXEC_REPOS``: repo names, space or comma separated, quotes stripped."""
    names = [name.strip("\"'") for name in re.split(r"[\s,]+", raw.strip())]
    names = [name for name in names if name]
    if not names:
        raise Invalid("names no repository", "list repos like oasis.opensciencegrid.org")
    seen: list[str] = []
    for name in names:
        if not _REPO.fullmatch(name):
            raise Invalid(
                f"{shown(name)} is not a CVMFS repository name",
                "use fully qualified names like singularity.opensciencegrid.org",
            )
        if name not in seen:
            seen.append(name)
    return tuple(seen)


def parse_cvmfs_proxy(raw: str) -> str:
    fix = "use cvmfs syntax, e.g. http://squid:3128;DIRECT (no spaces or quotes)"
    return _named(raw, _CVMFS_PROXY, "a CVMFS proxy list", fix)


def parse_cvmfs_quota(raw: str) -> int:
    value = parse_int(raw, minimum=-1, unit="MB (-1 for no limit)")
    if value == 0:
        raise Invalid("0 is not a quota", "use a size in MB, or -1 for no limit")
    return value


# ---------------------------------------------------------------------------
# Times, paths, lists


def parse_walltime(raw: str) -> int:
    """Seconds, or Slurm-style ``[[D-]HH:]MM:SS``."""
    text = raw.strip()
    match = _WALLTIME.fullmatch(text)
    if match:
        days, hours = int(match["d"] or 0), int(match["h"] or 0)
        seconds = ((days * 24 + hours) * 60 + int(match["m"])) * 60 + int(match["s"])
        if seconds > 0:
            return seconds
    elif re.fullmatch(r"[0-9]+", text) and int(text) > 0:
        return int(text)
    raise Invalid(
        f"{shown(text)} is not a walltime", "use seconds (> 0) or [[D-]HH:]MM:SS, e.g. 1-12:00:00"
    )


def parse_abs_path(raw: str) -> PurePosixPath:
    text = raw.strip()
    reason = _plain_text_reason(text)
    if reason:
        raise Invalid(f"{shown(text)} {reason}", "use a plain absolute path")
    if not text.startswith("/"):
        raise Invalid(f"{shown(text)} is not an absolute path", "use a path starting with /")
    return PurePosixPath(text)


def parse_mount_source(raw: str) -> PurePosixPath:
    """A host path the launcher mounts: absolute, and no ':' or ',' (they would split the
    engine's ``-v SRC:DST:OPTIONS`` argument)."""
    path = parse_abs_path(raw)
    if ":" in str(path) or "," in str(path):
        raise Invalid(f"{shown(str(path))} contains ':' or ','", "use a path without ':' or ','")
    return path


def parse_bind_list(raw: str) -> tuple[str, ...]:
    """``SINGULARITY_BIND_EXTRA``: ``src[:dst[:ro|rw]]`` binds with absolute paths, as
    Apptainer's ``-B`` takes them, separated by commas or blanks (OSG's pilot splits
    the list on both)."""
    specs = [item for item in re.split(r"[\s,]+", raw.strip()) if item]
    for spec in specs:
        parts = spec.split(":")
        options_ok = len(parts) < 3 or parts[2] in ("ro", "rw")
        if len(parts) > 3 or not options_ok:
            raise Invalid(f"{shown(spec)} is not src[:dst[:ro|rw]]", "e.g. /data:/data:ro")
        for path in parts[:2]:
            parse_abs_path(path)
    return tuple(specs)


JOB_ENV_FIX = (
    "write NAME=VALUE entries separated by blanks, in HTCondor's environment syntax: "
    "quote a value with blanks in single quotes (NAME='a b'), write '' for a quote "
    'inside them and "" for a double quote'
)
JOB_ENV_CONFIG_FIX = (
    "write the value without '$' or backslashes: the jobs' environment is part of "
    "HTCondor's configuration, where '$(...)' expands a macro and '\\' continues a line"
)


def _condor_environment_entries(text: str) -> list[str]:
    """The entries of HTCondor's quoted environment syntax (condor_submit's
    ``environment = "..."``, without the outer double quotes): blanks separate
    entries except inside single quotes, ``''`` inside single quotes is a single
    quote, ``""`` anywhere is a double quote."""
    entries: list[str] = []
    current: list[str] = []
    started = quoted = False
    i = 0
    while i < len(text):
        ch, following = text[i], text[i + 1 : i + 2]
        i += 1
        if ch == '"':
            if following != '"':
                raise Invalid("has a lone double quote", JOB_ENV_FIX)
            current.append('"')
            started, i = True, i + 1
        elif ch == "'" and quoted and following == "'":
            current.append("'")
            i += 1
        elif ch == "'":
            quoted, started = not quoted, True
        elif ch in " \t" and not quoted:
            if started:
                entries.append("".join(current))
            current, started = [], False
        else:
            current.append(ch)
            started = True
    if quoted:
        raise Invalid("has a single quote that is not closed", JOB_ENV_FIX)
    if started:
        entries.append("".join(current))
    return entries


def parse_job_env(raw: str) -> tuple[tuple[str, str], ...]:
    """``EXTRA_JOB_ENV``: entries added to every job's environment, in HTCondor's quoted
    environment syntax as OSG's container takes it (SPEC 4.1): ``A=1 B='x y'``, also
    with condor_submit's outer double quotes (``"A=1 B='x y'"``)."""
    text = raw.strip()
    if text.startswith('"') and not text.startswith('""') and text.endswith('"') and len(text) > 1:
        text = text[1:-1]
    pairs: list[tuple[str, str]] = []
    for entry in _condor_environment_entries(text):
        name, sep, value = entry.partition("=")
        if not sep or not _ENV_NAME.fullmatch(name):
            raise Invalid(f"{shown(entry)} is not NAME=VALUE", JOB_ENV_FIX)
        if name.upper().startswith("_CONDOR_") or name == "TOKEN":
            raise Invalid(f"{name} may not be set for jobs", "remove it from EXTRA_JOB_ENV")
        reason = config_unsafe_reason(value)
        if reason:
            raise Invalid(f"the value of {name} {reason}", JOB_ENV_CONFIG_FIX)
        pairs.append((name, value))
    return tuple(pairs)


def parse_condor_knob_value(raw: str) -> str:
    """``_CONDOR_<KNOB>``: HTCondor's own syntax; one line is all that can be asked."""
    if has_control(raw):
        raise Invalid("contains a control character", "write the value on one line")
    return raw


# ---------------------------------------------------------------------------
# The launcher's own keys


def parse_image(raw: str) -> str:
    fix = "write [registry/]name[:tag][@digest], e.g. hub.example.org/osg/ospool-ep:1.0"
    return _named(raw, _IMAGE, "an image reference", fix)


def parse_container_name(raw: str) -> str:
    fix = "use letters, digits, '_', '.' and '-', starting with a letter or digit"
    return _named(raw, _NAME, "a container name", fix, longest=128)


def parse_apparmor_profile(raw: str) -> str:
    return _named(raw, _NAME, "an AppArmor profile name", "e.g. docker-ep")
