"""The probe's upload client against real HTTP servers on loopback."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from probe.upload import client as httpc


class _Answers(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    size = 0

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", "0")))
        body = b"x" * self.size if self.size else b'{"ok": true}'
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def server() -> Iterator[ThreadingHTTPServer]:
    running = ThreadingHTTPServer(("127.0.0.1", 0), _Answers)
    threading.Thread(target=running.serve_forever, daemon=True).start()
    yield running
    running.shutdown()
    _Answers.size = 0


def test_answers_on_a_kept_alive_connection(server: ThreadingHTTPServer) -> None:
    url = f"http://127.0.0.1:{server.server_port}/api/v1/measurements"
    with httpc.Client(timeout=5) as http:
        for _ in range(3):
            answer = http.post(url, json=[{"id": "x"}])
            assert (answer.status_code, answer.json()) == (200, {"ok": True})
        assert len(http._connections) == 1


def test_an_oversized_answer_is_refused_not_read(server: ThreadingHTTPServer) -> None:
    """An on-path box answering megabytes must not fill the probe's memory."""
    _Answers.size = httpc.MAX_BODY + 1
    with httpc.Client(timeout=5) as http, pytest.raises(httpc.HttpError, match="larger than"):
        http.post(f"http://127.0.0.1:{server.server_port}/", content=b"[]")


@pytest.mark.parametrize(("url", "error"), [("ftp://host/", httpc.UnsupportedProtocol),
                                             ("http://host:port/", httpc.InvalidURL),
                                             ("http:///path", httpc.InvalidURL)])
def test_bad_urls(url: str, error: type[Exception]) -> None:
    with httpc.Client() as http, pytest.raises(error):
        http.get(url)


def test_nothing_listening_is_a_connect_error() -> None:
    from tests.support.tcp_servers import closed_port

    with httpc.Client(timeout=2) as http, pytest.raises(httpc.ConnectError):
        http.get(f"http://127.0.0.1:{closed_port()}/")


@contextlib.contextmanager
def not_http_server() -> Iterator[str]:
    """A server on loopback that answers every connection with bytes that are not
    HTTP (a wrong port: another service, or an on-path box): its base URL."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn, contextlib.suppress(OSError):
                conn.settimeout(5)
                conn.recv(65536)
                conn.sendall(b"\x00\xffGARBAGE NOT HTTP\r\n\r\n" * 10)

    threading.Thread(target=serve, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        listener.close()


def test_an_answer_that_is_not_http_is_a_connect_error() -> None:
    with not_http_server() as url, httpc.Client(timeout=5) as http, \
            pytest.raises(httpc.NotHttp, match="not an HTTP answer") as raised:
        http.get(url + "/api/v1/collector")
    assert isinstance(raised.value, httpc.ConnectError)  # what every caller catches
    assert "GARBAGE" not in str(raised.value)


def test_answers_carry_their_headers(server: ThreadingHTTPServer) -> None:
    with httpc.Client(timeout=5) as http:
        answer = http.post(f"http://127.0.0.1:{server.server_port}/", content=b"[]")
    assert answer.headers["content-length"] == str(len(answer.content))
