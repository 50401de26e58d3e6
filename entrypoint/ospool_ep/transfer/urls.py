"""Transfer URLs: ``osdf:///path``, ``stash:///path``, ``pelican://federation/path``.

Pure: a URL string in, an :class:`ObjectUrl` or a :class:`BadUrl` naming what is wrong out.
The conventions are the Pelican client's and HTCondor's:

- ``osdf`` and ``stash`` always mean the OSDF, whose discovery host is ``osg-htc.org``; a
  host written after ``osdf://`` is the first component of the object's path, as the
  Pelican clients read it (``osdf://ospool/ap20/x`` is ``/ospool/ap20/x``);
- ``pelican://HOST[:PORT]/path`` names the federation by its discovery host;
- ``NAME+osdf://...`` asks for the job's credential ``NAME`` (HTCondor picks the plugin by
  the part after the last ``+`` and hands the credentials over in ``$_CONDOR_CREDS``);
- the query option ``directread`` reads from the origin, past the caches; the others the
  Go client knows (``recursive``, ``pack``, ``prefercached``, ...) are refused by name
  rather than silently ignored (collections need directory listings, not done here).
"""

from __future__ import annotations

import ipaddress
import re
import urllib.parse
from dataclasses import dataclass

METHODS = ("osdf", "pelican", "stash")
"""What the plugin offers (``SupportedMethods``)."""
OSDF_DISCOVERY_HOST = "osg-htc.org"
SUPPORTED_OPTIONS = frozenset({"directread"})
_TOKEN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
_HOST = re.compile(r"[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?")
_MAX_URL = 8192


class BadUrl(ValueError):
    """The URL cannot name an object; the message says why and what a good one looks like."""


@dataclass(frozen=True)
class ObjectUrl:
    url: str
    """As the job wrote it (for result ads and messages)."""
    method: str
    """``osdf``, ``pelican`` or ``stash``: the scheme without a credential name."""
    federation: str
    """The federation's discovery URL, ``pelican://host[:port]/``."""
    path: str
    """The object's name in the federation: absolute, normalised, never ``..``."""
    token_name: str | None = None
    direct_read: bool = False

    @property
    def federation_host(self) -> str:
        return urllib.parse.urlsplit(self.federation).netloc


def parse(url: str) -> ObjectUrl:
    if not url or len(url) > _MAX_URL:
        raise BadUrl(f"the URL is {'empty' if not url else 'longer than 8192 characters'}")
    if any(ord(c) < 0x21 or ord(c) == 0x7F for c in url):
        raise BadUrl("the URL holds a space or a control character: percent-encode it (%20)")
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise BadUrl(f"{url!r} is not a URL: write osdf:///namespace/path")
    token_name, plus, method = scheme.rpartition("+")
    method = method.lower()
    if method not in METHODS:
        raise BadUrl(f"scheme {method!r} is not one of {', '.join(METHODS)}")
    if plus and not _TOKEN_NAME.fullmatch(token_name):
        raise BadUrl(
            f"credential name {token_name!r} before '+{method}' must be letters, digits, '_', '.' "
            "or '-' (the name of the job's token, as in use_oauth_services)"
        )
    try:
        parts = urllib.parse.urlsplit(f"x://{rest}")
    except ValueError as error:  # "Invalid IPv6 URL": a '[' without its ']'
        raise BadUrl(f"{url!r} is not a URL: {error}") from None
    if parts.fragment:
        raise BadUrl("a URL fragment (#...) means nothing to a federation: remove it")
    options = _options(parts.query)
    netloc = parts.netloc
    if method == "pelican":
        if not netloc:
            raise BadUrl("pelican:// needs the federation's host: pelican://<federation>/<path>")
        _check_netloc(netloc)
        federation, path = f"pelican://{netloc.lower()}/", parts.path
    else:
        # osdf://ospool/x is /ospool/x: the Pelican clients read a host here as a path part.
        federation = f"pelican://{OSDF_DISCOVERY_HOST}/"
        path = f"/{netloc}{parts.path}" if netloc else parts.path
    return ObjectUrl(
        url=url,
        method=method,
        federation=federation,
        path=_object_path(path),
        token_name=token_name or None,
        direct_read="directread" in options,
    )


def _options(query: str) -> set[str]:
    names = {name.lower() for name, _ in urllib.parse.parse_qsl(query, keep_blank_values=True)}
    unknown = sorted(names - SUPPORTED_OPTIONS)
    if unknown:
        raise BadUrl(
            f"URL option {', '.join(unknown)} is not supported by this plugin "
            f"(supported: {', '.join(sorted(SUPPORTED_OPTIONS))})"
        )
    return names


def _check_netloc(netloc: str) -> None:
    if "@" in netloc:
        raise BadUrl("credentials in the URL (user@host) are refused: name a token instead")
    host, port = _host_and_port(netloc)
    if port and not (port.isdigit() and 0 < int(port) < 65536):
        raise BadUrl(f"port {port!r} of {netloc!r} is not a number from 1 to 65535")
    if host.startswith("["):
        # Newer Pythons' urlsplit checks this too; the words differ between versions.
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            raise BadUrl(f"{host!r} is not an IPv6 address") from None
    elif not _HOST.fullmatch(host):
        raise BadUrl(f"{host!r} is not a host name")


def _host_and_port(netloc: str) -> tuple[str, str]:
    """``host[:port]``, where an IPv6 host is bracketed: ``[::1]:8443``."""
    if netloc.startswith("["):
        end = netloc.index("]") + 1  # urlsplit has refused a '[' without its ']'
        host, rest = netloc[:end], netloc[end:]
        if rest and not rest.startswith(":"):
            raise BadUrl(f"{netloc!r} is not a host name: write [IPv6 address]:port")
        return host, rest[1:]
    if netloc.count(":") == 1:
        host, _, port = netloc.partition(":")
        return host, port
    return netloc, ""


def _object_path(path: str) -> str:
    segments = [s for s in path.split("/") if s]
    if not segments:
        raise BadUrl("the URL names no object: write osdf:///<namespace>/<path>")
    if any(s in (".", "..") for s in segments):
        raise BadUrl("'.' and '..' are not allowed in an object's path")
    trailing = "/" if path.endswith("/") else ""
    return "/" + "/".join(segments) + trailing
