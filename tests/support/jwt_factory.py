"""Fake IDTOKENs for tests: HS256 JWTs signed with a throwaway key, stdlib only.

Shaped like what ``condor_token_create`` and the OSPool Token Registry issue
(header ``alg``/``kid``; payload ``iss``, ``sub``, ``iat``, ``jti``, optional
``exp`` and ``scope``), so a test states only the claim it is about.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Mapping

NOW = 1_790_000_000
"""The tests' clock: 2026-09-21T14:13:20Z."""

DAY = 24 * 3600

ISSUER = "flock.opensciencegrid.org"

STARTD_SCOPE = "condor:/READ condor:/ADVERTISE_STARTD condor:/ADVERTISE_MASTER"

_KEY = b"not-the-pool-key"


class _Drop:
    def __repr__(self) -> str:
        return "DROP"


DROP = _Drop()
"""Pass as a claim's value to leave that claim out."""


def segment(raw: bytes) -> str:
    """base64url without padding, as JWTs encode each part."""
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def json_segment(value: object) -> str:
    return segment(json.dumps(value, separators=(",", ":")).encode())


def header(**overrides: object) -> dict[str, object]:
    """A token header; keyword arguments replace (or with ``DROP`` remove) fields."""
    return _merged({"alg": "HS256", "kid": "POOL"}, overrides)


def payload(**overrides: object) -> dict[str, object]:
    """A token payload valid at :data:`NOW` for 90 days; keywords replace or ``DROP`` claims."""
    defaults: dict[str, object] = {
        "iss": ISSUER,
        "sub": f"site-ep@{ISSUER}",
        "iat": NOW - DAY,
        "jti": "0123456789abcdef",
        "exp": NOW + 90 * DAY,
    }
    return _merged(defaults, overrides)


def sign(header_part: str, payload_part: str) -> str:
    mac = hmac.new(_KEY, f"{header_part}.{payload_part}".encode(), hashlib.sha256)
    return segment(mac.digest())


def make_jwt(
    *,
    claims: Mapping[str, object] | object | None = None,
    head: Mapping[str, object] | object | None = None,
) -> str:
    """A signed JWT string; ``claims``/``head`` may be any JSON value (to test bad shapes)."""
    header_part = json_segment(header() if head is None else head)
    payload_part = json_segment(payload() if claims is None else claims)
    return f"{header_part}.{payload_part}.{sign(header_part, payload_part)}"


def token(**claim_overrides: object) -> str:
    """Shorthand: a JWT with the default header and ``payload(**claim_overrides)``."""
    return make_jwt(claims=payload(**claim_overrides))


def _merged(defaults: dict[str, object], overrides: Mapping[str, object]) -> dict[str, object]:
    merged = {**defaults, **overrides}
    return {k: v for k, v in merged.items() if v is not DROP}
