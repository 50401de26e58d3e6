"""A local Pelican federation for tests: its certificates, layout, objects and process.

``tests/support/federation_server.py`` is the server (standard library only, so the
image's python3 runs it too); this module is the host side that describes a
federation, writes the server's configuration, puts objects in its namespaces,
runs it on 127.0.0.1 and says how to run it in a container instead.

Typical use::

    fed = Federation(tmp_path / "fed")
    digest = fed.put_object("/test/big.bin", 50 << 20)      # sha256 of what was written
    with serve(fed) as running:
        env = running.client_env()                         # SSL_CERT_FILE=<test CA>
        url = running.url("/test/big.bin")                 # pelican://127.0.0.1:PORT/test/big.bin
        ...                                                # a client under env fetches url
        assert [r["role"] for r in running.requests("/test/big.bin")] == [...]

Every federation has the same shape (``ROLES``): four federations share one cache,
one origin and one dead cache, each with its own discovery endpoint and director:

* ``main``: director -> ``cache`` (stalls objects under ``stall_prefix`` after
  ``stall_after_bytes``, closes those under ``truncate_prefix`` after as many);
* ``fallback``: director -> ``cache_dead`` (pri=1, refuses connections), then ``cache``;
* ``silent``: its director completes TLS, reads the request and never answers;
* ``silent_tls``: its director accepts the TCP connection and never starts TLS.

On the host every role listens on 127.0.0.1 on a port the OS picks; in a container
(:func:`container_spec`) each role has a hostname and a fixed port, discovery of
``main`` on ``osg-htc.org:443`` so that ``osdf:///test/x`` reaches it.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import ipaddress
import json
import os
import random
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from paths import PROGRAMS, SUPPORT

SERVER = SUPPORT / "federation_server.py"
CLIENT = PROGRAMS / "pelican_client.py"

WRITE_TOKEN = "standin-write-token"
"""Accepted for uploads to every namespace of a default :class:`Federation`."""

READ_TOKEN = "standin-read-token"
"""Accepted for reads of ``/private`` (which requires a token) in a default Federation."""

FEDERATIONS: Mapping[str, tuple[str, str]] = {
    "main": ("discovery", "director"),
    "fallback": ("discovery_fallback", "director_fallback"),
    "silent": ("discovery_silent", "director_silent"),
    "silent_tls": ("discovery_silent_tls", "director_silent_tls"),
}
"""Federation name -> (its discovery role, its director role)."""

ROLES: tuple[str, ...] = (
    "discovery",
    "director",
    "cache",
    "origin",
    "cache_dead",
    "discovery_fallback",
    "director_fallback",
    "discovery_silent",
    "director_silent",
    "discovery_silent_tls",
    "director_silent_tls",
)


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int
    """0 on the host: the OS chooses (the server reports what it chose)."""


HOST_ENDPOINTS: Mapping[str, Endpoint] = {role: Endpoint("127.0.0.1", 0) for role in ROLES}

CONTAINER_ENDPOINTS: Mapping[str, Endpoint] = {
    "discovery": Endpoint("osg-htc.org", 443),
    "director": Endpoint("director.osdf.test", 8444),
    "cache": Endpoint("cache.osdf.test", 8445),
    "origin": Endpoint("origin.osdf.test", 8446),
    "cache_dead": Endpoint("cache-dead.osdf.test", 8447),
    "discovery_fallback": Endpoint("fallback.osdf.test", 8448),
    "director_fallback": Endpoint("director-fallback.osdf.test", 8449),
    "discovery_silent": Endpoint("silent.osdf.test", 8450),
    "director_silent": Endpoint("director-silent.osdf.test", 8451),
    "discovery_silent_tls": Endpoint("silent-tls.osdf.test", 8452),
    "director_silent_tls": Endpoint("director-silent-tls.osdf.test", 8453),
}
"""Where each role listens in a container; the hostnames all map to the server's IP."""

CONTAINER_ROOT = "/federation"
"""Where :func:`container_spec` mounts the server, its configuration and its tree."""


# ---------------------------------------------------------------------------
# Certificates


@dataclass(frozen=True)
class TestCA:
    """A throwaway certificate authority: PEM certificate and private key."""

    __test__ = False  # not a pytest test class, despite the name

    cert: Path
    key: Path


def _write_key(path: Path, key: Any) -> None:
    from cryptography.hazmat.primitives import serialization

    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)


def make_ca(directory: Path, *, name: str = "ospool-ep test federation CA") -> TestCA:
    """A CA (EC P-256, valid ten days) in ``directory/ca.pem`` and ``directory/ca.key``."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=10))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    ca = TestCA(cert=directory / "ca.pem", key=directory / "ca.key")
    ca.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_key(ca.key, key)
    return ca


def make_server_cert(
    ca: TestCA,
    directory: Path,
    *,
    dns_names: Sequence[str] = ("localhost",),
    ips: Sequence[str] = ("127.0.0.1",),
    name: str = "server",
) -> tuple[Path, Path]:
    """A server certificate signed by ``ca`` for these names: ``(NAME.pem, NAME.key)``.

    The PEM holds the certificate then the CA's, the chain a server presents.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    directory.mkdir(parents=True, exist_ok=True)
    ca_cert = x509.load_pem_x509_certificate(ca.cert.read_bytes())
    ca_key = serialization.load_pem_private_key(ca.key.read_bytes(), password=None)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise TypeError(f"{ca.key}: expected the EC key make_ca writes")
    key = ec.generate_private_key(ec.SECP256R1())
    alt_names: list[x509.GeneralName] = [x509.DNSName(n) for n in dns_names]
    alt_names += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    common_name = (list(dns_names) or list(ips) or [name])[0]
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=9))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem, key_path = directory / f"{name}.pem", directory / f"{name}.key"
    pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM) + ca.cert.read_bytes())
    _write_key(key_path, key)
    return pem, key_path


# ---------------------------------------------------------------------------
# Objects


def deterministic_bytes(size: int, seed: str) -> Iterator[bytes]:
    """``size`` pseudo-random bytes in 1 MiB blocks, the same for the same seed."""
    block = 1 << 20
    for index, offset in enumerate(range(0, size, block)):
        yield random.Random(f"{seed}/{index}").randbytes(min(block, size - offset))


# ---------------------------------------------------------------------------
# The federation's description and files


@dataclass(frozen=True)
class NamespaceSpec:
    prefix: str
    require_token: bool = False
    read_tokens: tuple[str, ...] = ()
    write_tokens: tuple[str, ...] = (WRITE_TOKEN,)


DEFAULT_NAMESPACES = (
    NamespaceSpec("/test"),
    NamespaceSpec("/private", require_token=True, read_tokens=(READ_TOKEN,)),
)


@dataclass
class Federation:
    """Everything one stand-in federation keeps under ``base``.

    ``base/config.json`` (host) and ``base/config-container.json`` (container) are the
    server's configurations, with paths relative to ``base``: ``tls/`` (CA, server
    certificate), ``tree/<prefix>/`` (each namespace's objects) and ``state/`` (host) or
    ``state-container/`` (container: request log, ready file).
    """

    base: Path
    namespaces: tuple[NamespaceSpec, ...] = DEFAULT_NAMESPACES
    stall_prefix: str = "/test/stall/"
    stall_after_bytes: int = 65536
    truncate_prefix: str = "/test/truncated/"
    hold_seconds: float = 600
    """How long a stalled body or a silent director keeps its connection open."""
    extra_dns_names: tuple[str, ...] = ()
    extra_ips: tuple[str, ...] = ()
    """More names for the server certificate (a container's network address, say)."""
    _ca: TestCA | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.base.mkdir(parents=True, exist_ok=True)
        for ns in self.namespaces:
            self.tree(ns.prefix).mkdir(parents=True, exist_ok=True)

    # -- layout

    @property
    def tls_dir(self) -> Path:
        return self.base / "tls"

    @property
    def tree_dir(self) -> Path:
        return self.base / "tree"

    def state_dir(self, *, container: bool = False) -> Path:
        return self.base / ("state-container" if container else "state")

    def log_path(self, *, container: bool = False) -> Path:
        """The request log: one JSON object per line (role, method, path, status, bytes)."""
        return self.state_dir(container=container) / "requests.jsonl"

    def tree(self, prefix: str) -> Path:
        """The directory on disk that holds namespace ``prefix``'s objects."""
        return self.tree_dir / prefix.strip("/")

    def local_path(self, path: str) -> Path:
        """Where the object ``path`` (e.g. ``/test/x``) lives on disk."""
        ns = self.namespace_of(path)
        rest = path[len(ns.prefix.rstrip("/")) :].lstrip("/")
        return self.tree(ns.prefix) / rest

    def namespace_of(self, path: str) -> NamespaceSpec:
        matches = [
            ns
            for ns in self.namespaces
            if path == ns.prefix or path.startswith(ns.prefix.rstrip("/") + "/")
        ]
        if not matches:
            prefixes = ", ".join(ns.prefix for ns in self.namespaces)
            raise ValueError(f"{path} is in no namespace of this federation ({prefixes})")
        return max(matches, key=lambda ns: len(ns.prefix))

    # -- objects

    def put_object(self, path: str, size: int, *, seed: str | None = None) -> str:
        """Write ``size`` deterministic bytes (seeded by ``seed`` or the path) as object
        ``path``; returns their sha256 (hex)."""
        return self._write(path, deterministic_bytes(size, seed or path))

    def put_bytes(self, path: str, data: bytes) -> str:
        """Write ``data`` as object ``path``; returns its sha256 (hex)."""
        return self._write(path, iter((data,)))

    def _write(self, path: str, blocks: Iterator[bytes]) -> str:
        target = self.local_path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256()
        temp = target.with_name(f".{target.name}.writing")
        with temp.open("wb") as out:
            for block in blocks:
                digest.update(block)
                out.write(block)
        temp.replace(target)
        return digest.hexdigest()

    # -- TLS

    def ca(self) -> TestCA:
        """The federation's CA and server certificate, made once (names: localhost,
        127.0.0.1 and every container hostname)."""
        if self._ca is None:
            ca = TestCA(self.tls_dir / "ca.pem", self.tls_dir / "ca.key")
            if not (ca.cert.is_file() and (self.tls_dir / "server.pem").is_file()):
                ca = make_ca(self.tls_dir)
                names = {e.host for e in CONTAINER_ENDPOINTS.values()}
                make_server_cert(
                    ca,
                    self.tls_dir,
                    dns_names=["localhost", *sorted(names), *self.extra_dns_names],
                    ips=["127.0.0.1", *self.extra_ips],
                )
            self._ca = ca
        return self._ca

    # -- server configuration

    def config(
        self, endpoints: Mapping[str, Endpoint], *, listen: str, container: bool
    ) -> dict[str, Any]:
        """The server's configuration (federation_server.load_config's schema)."""
        state = self.state_dir(container=container).name

        def url(role: str) -> str:
            end = endpoints[role]
            # {role} is the server's own placeholder for the port it ends up on.
            return (
                f"https://{end.host}:{{{role}}}"
                if end.port == 0
                else f"https://{end.host}:{end.port}"
            )

        def role(name: str, kind: str, **extra: Any) -> dict[str, Any]:
            return {
                "name": name,
                "kind": kind,
                "port": endpoints[name].port,
                "url": url(name),
                **extra,
            }

        roles = [
            role(
                "cache",
                "cache",
                faults=[
                    {
                        "prefix": self.stall_prefix,
                        "kind": "stall",
                        "after_bytes": self.stall_after_bytes,
                    },
                    {
                        "prefix": self.truncate_prefix,
                        "kind": "truncate",
                        "after_bytes": self.stall_after_bytes,
                    },
                ],
            ),
            role("origin", "origin"),
            role("cache_dead", "refused"),
            role("director_silent", "silent", tls_handshake=True),
            role("director_silent_tls", "silent", tls_handshake=False),
        ]
        caches = {"main": ["cache"], "fallback": ["cache_dead", "cache"]}
        for fed, (discovery, director) in FEDERATIONS.items():
            roles.append(role(discovery, "discovery", director=director))
            if fed in caches:
                roles.append(role(director, "director", caches=caches[fed], origin="origin"))
        return {
            "listen": listen,
            "tls": {"cert": "tls/server.pem", "key": "tls/server.key"},
            "log": f"{state}/requests.jsonl",
            "ready_file": f"{state}/ready.json",
            "hold_seconds": self.hold_seconds,
            "namespaces": [
                {
                    "prefix": ns.prefix,
                    "root": str(self.tree(ns.prefix).relative_to(self.base)),
                    "require_token": ns.require_token,
                    "read_tokens": list(ns.read_tokens),
                    "write_tokens": list(ns.write_tokens),
                    "issuer": "https://issuer.osdf.test",
                }
                for ns in self.namespaces
            ],
            "roles": roles,
        }

    def write_config(
        self,
        *,
        endpoints: Mapping[str, Endpoint] = HOST_ENDPOINTS,
        listen: str = "127.0.0.1",
        container: bool = False,
    ) -> Path:
        """Write ``config.json`` (or ``config-container.json``) and make the TLS files."""
        self.ca()
        path = self.base / ("config-container.json" if container else "config.json")
        path.write_text(
            json.dumps(self.config(endpoints, listen=listen, container=container), indent=1)
        )
        self.state_dir(container=container).mkdir(parents=True, exist_ok=True)
        return path


def read_log(path: Path) -> list[dict[str, Any]]:
    """The request log's records, oldest first (a line still being written is skipped)."""
    if not path.exists():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        with contextlib.suppress(ValueError):
            records.append(json.loads(line))
    return records


# ---------------------------------------------------------------------------
# On the host


@dataclass(frozen=True)
class RunningFederation:
    """A stand-in server running on 127.0.0.1 (from :func:`serve`)."""

    federation: Federation
    ports: Mapping[str, int]
    """Role -> port it listens on (``cache_dead``: bound, refusing)."""
    urls: Mapping[str, str]
    """Role -> the ``https://127.0.0.1:PORT`` it advertises."""
    process: subprocess.Popen[bytes]

    @property
    def ca_file(self) -> Path:
        return self.federation.ca().cert

    def discovery_url(self, federation: str = "main") -> str:
        """``pelican://127.0.0.1:PORT``: what a PelicanFileSystem is constructed with."""
        return f"pelican://127.0.0.1:{self.ports[FEDERATIONS[federation][0]]}"

    def url(self, path: str, federation: str = "main") -> str:
        """``pelican://127.0.0.1:PORT/test/x`` for object ``path`` in that federation."""
        return self.discovery_url(federation) + path

    def client_env(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """An environment in which clients trust the test CA (OpenSSL's SSL_CERT_FILE)."""
        env = dict(os.environ if base is None else base)
        env["SSL_CERT_FILE"] = str(self.ca_file)
        return env

    def requests(self, path: str | None = None) -> list[dict[str, Any]]:
        """Logged requests, oldest first; with ``path``, only those whose URL path ends
        with it (director origin lookups included)."""
        records = read_log(self.federation.log_path())
        if path is None:
            return records
        return [r for r in records if r["path"].split("?", 1)[0].endswith(path)]


def _wait_ready(
    fed: Federation, process: subprocess.Popen[bytes], timeout: float
) -> dict[str, Any]:
    ready = fed.state_dir() / "ready.json"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            err = (fed.state_dir() / "server.err").read_text(errors="replace")
            raise RuntimeError(
                f"the federation stand-in exited {process.returncode}: {err.strip()}"
            )
        if ready.is_file():
            with contextlib.suppress(ValueError):
                info: dict[str, Any] = json.loads(ready.read_text())
                if info.get("pid") == process.pid:
                    return info
        time.sleep(0.02)
    raise TimeoutError(f"the federation stand-in did not start within {timeout} s")


def _check_answers(url: str, ca: Path, timeout: float) -> None:
    context = ssl.create_default_context(cafile=str(ca))
    with urllib.request.urlopen(  # noqa: S310 (https to our own loopback server)
        url + "/.well-known/pelican-configuration", context=context, timeout=timeout
    ) as resp:
        json.loads(resp.read())


@contextlib.contextmanager
def serve(
    federation: Federation, *, python: str = sys.executable, timeout: float = 10.0
) -> Iterator[RunningFederation]:
    """Run the stand-in on 127.0.0.1 until the block ends; it answers when this yields."""
    config = federation.write_config()
    state = federation.state_dir()
    (state / "ready.json").unlink(missing_ok=True)
    with (state / "server.out").open("wb") as out, (state / "server.err").open("wb") as err:
        process = subprocess.Popen(
            [python, str(SERVER), "--config", str(config)], stdout=out, stderr=err
        )
    try:
        info = _wait_ready(federation, process, timeout)
        _check_answers(info["urls"]["discovery"], federation.ca().cert, timeout)
        yield RunningFederation(federation, info["ports"], info["urls"], process)
    finally:
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# ---------------------------------------------------------------------------
# In a container


@dataclass(frozen=True)
class ContainerSpec:
    """What a container of the image needs to run the stand-in (nothing is started here).

    Map every name in ``hostnames`` to the container's address (podman network aliases,
    or ``--add-host`` in the clients); clients trust ``ca_file`` (mount it and set
    SSL_CERT_FILE, or add it to the system store). The server listens on 443, so it
    runs as root in its container (or with ``net.ipv4.ip_unprivileged_port_start``).
    """

    command: tuple[str, ...]
    volumes: tuple[tuple[Path, str, str], ...]
    """(host path, container path, "ro" or "rw")."""
    hostnames: tuple[str, ...]
    ca_file: Path
    log: Path
    """Where the container's request log appears on the host."""
    ports: Mapping[str, int]
    """Role -> its fixed port in the container."""

    def url(self, path: str, federation: str = "main") -> str:
        """``osdf:///test/x`` in the main federation, ``pelican://HOST:PORT/test/x`` else."""
        if federation == "main":
            return f"osdf://{path}"
        end = CONTAINER_ENDPOINTS[FEDERATIONS[federation][0]]
        return f"pelican://{end.host}:{end.port}{path}"


def container_spec(
    federation: Federation, *, python: str = "python3", writable_tree: bool = True
) -> ContainerSpec:
    """Write ``config-container.json`` and say how to run the stand-in in a container.

    ``writable_tree``: uploads land in the host's ``tree/`` (mounted read-write; the
    container's user must be able to write there); otherwise it is mounted read-only
    and every PUT is answered 507.
    """
    config = federation.write_config(
        endpoints=CONTAINER_ENDPOINTS,
        listen="0.0.0.0",  # noqa: S104 (inside its own container, on the pool network)
        container=True,
    )
    root = CONTAINER_ROOT
    volumes = (
        (SERVER, f"{root}/federation_server.py", "ro"),
        (config, f"{root}/config.json", "ro"),
        (federation.tls_dir, f"{root}/tls", "ro"),
        (federation.tree_dir, f"{root}/tree", "rw" if writable_tree else "ro"),
        (federation.state_dir(container=True), f"{root}/state-container", "rw"),
    )
    return ContainerSpec(
        command=(python, f"{root}/federation_server.py", "--config", f"{root}/config.json"),
        volumes=volumes,
        hostnames=tuple(sorted({e.host for e in CONTAINER_ENDPOINTS.values()})),
        ca_file=federation.ca().cert,
        log=federation.log_path(container=True),
        ports={role: end.port for role, end in CONTAINER_ENDPOINTS.items()},
    )


# ---------------------------------------------------------------------------
# The real client, in a process of its own


def run_client(
    ops: Sequence[Mapping[str, Any]], *, env: Mapping[str, str], timeout: float = 60.0
) -> list[dict[str, Any]]:
    """Run ``ops`` with pelicanfs in a fresh interpreter (``programs/pelican_client.py``).

    A process of its own because aiohttp reads SSL_CERT_FILE once, when it is first
    imported; each op gets a fresh PelicanFileSystem. Returns one result per op.
    """
    result = subprocess.run(
        [sys.executable, str(CLIENT), json.dumps(list(ops))],
        env=dict(env),
        capture_output=True,
        timeout=timeout,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"pelican_client exited {result.returncode}: {result.stderr.decode(errors='replace')}"
        )
    answers: list[dict[str, Any]] = json.loads(result.stdout)
    return answers
