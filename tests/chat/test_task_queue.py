"""task_queue.make_redis against real Redis: plain, and behind TLS with a self-signed
certificate, the way Heroku Redis serves rediss:// URLs."""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis.exceptions

from devtools.servers import RedisServer, free_port
from studychat.chat.task_queue import make_redis


def _pump(source: socket.socket, target: socket.socket) -> None:
    """Copy bytes one way until either side closes."""
    try:
        while data := source.recv(65536):
            target.sendall(data)
    except OSError:
        pass
    finally:
        for sock in (source, target):
            sock.close()


def _serve_tls(listener: socket.socket, context: ssl.SSLContext, backend_port: int) -> None:
    """Accept TLS clients and relay each one to the plain Redis behind."""
    while True:
        try:
            raw, _ = listener.accept()
        except OSError:
            return  # listener closed: the fixture is done
        try:
            client = context.wrap_socket(raw, server_side=True)
        except (OSError, ssl.SSLError):
            raw.close()  # a client that rejected our certificate
            continue
        backend = socket.create_connection(("127.0.0.1", backend_port))
        for pair in ((client, backend), (backend, client)):
            threading.Thread(target=_pump, args=pair, daemon=True).start()


@pytest.fixture()
def self_signed_tls_redis(redis_server: RedisServer, tmp_path: Path) -> Iterator[str]:
    """A rediss:// URL: a TLS terminator with a self-signed certificate before real Redis."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is needed to make a self-signed certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    command = ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"]
    subprocess.run(
        [*command, "-subj", "/CN=localhost", "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    port = free_port()
    listener = socket.create_server(("127.0.0.1", port))
    serving = threading.Thread(
        target=_serve_tls, args=(listener, context, redis_server.port), daemon=True
    )
    serving.start()
    yield f"rediss://127.0.0.1:{port}/0"
    listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept(); close() alone does not
    listener.close()
    serving.join(timeout=5)


def test_self_signed_certificate_is_refused_by_default(self_signed_tls_redis: str):
    client = make_redis(self_signed_tls_redis)
    with pytest.raises(redis.exceptions.ConnectionError, match="certificate verify failed"):
        client.ping()
    client.close()


def test_self_signed_certificate_is_accepted_when_checks_are_off(self_signed_tls_redis: str):
    client = make_redis(self_signed_tls_redis, ssl_cert_reqs="none")
    assert client.ping() is True
    client.set("tls-check", "through TLS", ex=60)
    assert client.get("tls-check") == b"through TLS"
    client.close()


def test_plain_url_ignores_the_tls_option(redis_server: RedisServer):
    # redis-py refuses ssl_cert_reqs on plain connections; Heroku's setting must not break
    # a redis:// URL (compose, a local Redis).
    client = make_redis(redis_server.url, ssl_cert_reqs="none")
    assert client.ping() is True
    client.close()
