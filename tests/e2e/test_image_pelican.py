"""pelicanfs in the image: it imports, and fetches an object the way a Pelican federation serves it.

The osdf:// / pelican:// / stash:// transfer plugin moves data with pelicanfs, which
the image installs from pinned wheels on top of Debian's aiohttp, fsspec and
cachetools (Dockerfile, build stage; scripts/image-wheels.txt). Debian's versions
are not those pelicanfs was released against (forky's cachetools is 7, pelicanfs
asks for <6), so the image's own python3 runs a real transfer: a TLS server on
127.0.0.1 in the container plays discovery, director and cache, and
``PelicanFileSystem.get`` must follow it to the object. No network is needed.
"""

from __future__ import annotations

from conftest import container_marks
from test_image import run_in_image  # tests/e2e/test_image.py

pytestmark = container_marks()

CA_FILE = "/tmp/pelican-ca.pem"
"""Inside the throwaway container: the test CA, trusted through SSL_CERT_FILE."""

FEDERATION = r"""
import datetime, http.server, ipaddress, ssl, sys, threading
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

ca_file, body = sys.argv[1], b"hello from the cache\n"
now = datetime.datetime.now(datetime.timezone.utc)
def cert(subject, key, issuer, issuer_key, *extensions):
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=1))
               .not_valid_after(now + datetime.timedelta(hours=1))
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                   issuer_key.public_key()), False))
    for extension, critical in extensions:
        builder = builder.add_extension(extension, critical)
    return builder.sign(issuer_key, hashes.SHA256())
name = lambda cn: x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
ca = cert(name("test CA"), ca_key, name("test CA"), ca_key,
          (x509.BasicConstraints(ca=True, path_length=None), True),
          (x509.KeyUsage(False, False, False, False, False, True, True, False, False), True))
leaf = cert(name("127.0.0.1"), key, ca.subject, ca_key,
            (x509.BasicConstraints(ca=False, path_length=None), True),
            (x509.SubjectAlternativeName([x509.IPAddress(ipaddress.IPv4Address("127.0.0.1"))]),
             False),
            (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False))
with open(ca_file, "wb") as f:
    f.write(ca.public_bytes(serialization.Encoding.PEM))
with open("/tmp/server.pem", "wb") as f:
    f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()))
    f.write(leaf.public_bytes(serialization.Encoding.PEM))

class Federation(http.server.BaseHTTPRequestHandler):
    def reply(self, send_body):
        url = f"https://127.0.0.1:{self.server.server_port}"
        if self.path == "/.well-known/pelican-configuration":
            data = ('{"director_endpoint": "%s"}' % url).encode()
            self.send_response(200)
        elif self.path == "/test/hello.txt":
            data = b""
            self.send_response(307)
            self.send_header("Location", f"{url}/cache/test/hello.txt")
            self.send_header("Link", f'<{url}/cache/test/hello.txt>; rel="duplicate"; pri=1')
            self.send_header("X-Pelican-Namespace", "namespace=/test, require-token=false")
        elif self.path == "/cache/test/hello.txt":
            data = body
            self.send_response(200)
        else:
            data = b""
            self.send_response(404)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if send_body:
            self.wfile.write(data)
    def do_GET(self):
        self.reply(True)
    def do_HEAD(self):
        self.reply(False)
    def log_message(self, *args):
        print("server:", self.command, self.path, file=sys.stderr)

server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Federation)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain("/tmp/server.pem")
server.socket = context.wrap_socket(server.socket, server_side=True)
threading.Thread(target=server.serve_forever, daemon=True).start()

from pelicanfs.core import PelicanFileSystem
PelicanFileSystem(f"pelican://127.0.0.1:{server.server_port}").get("/test/hello.txt", "/tmp/out")
with open("/tmp/out", "rb") as f:
    assert f.read() == body, "the fetched object differs"
print("fetched", len(body), "bytes")
"""
"""Discovery, director (a 307 naming the cache) and cache in one TLS server, then a get."""


def test_pelicanfs_imports_in_the_image_without_warnings_or_compiling() -> None:
    """As uid 1000 (who cannot write bytecode there), every module loads from its .pyc.

    A module compiled from source at each start would be paid by every transfer.
    """
    code, output = run_in_image(
        "python3", "-W", "error", "-v", "-c", "from pelicanfs.core import PelicanFileSystem"
    )
    assert code == 0, output[-3000:]
    loaded = [line for line in output.splitlines() if line.startswith("# code object from ")]
    assert any("pelicanfs" in line for line in loaded), output[-3000:]
    assert [line for line in loaded if not line.endswith(".pyc'")] == []


def test_pelicanfs_follows_discovery_and_the_director_to_the_object_over_tls() -> None:
    """The server's CA is trusted through SSL_CERT_FILE, as a site's would be."""
    code, output = run_in_image(
        "python3", "-c", FEDERATION, CA_FILE, options=("-e", f"SSL_CERT_FILE={CA_FILE}")
    )
    assert code == 0, output
    assert "fetched 21 bytes" in output, output
    assert "GET /test/hello.txt" in output, output  # the director was asked
