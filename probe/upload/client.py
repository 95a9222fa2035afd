"""A small synchronous HTTP/1.1 client for talking to the collector after a
pass: registration, uploads, receipts, audits (stdlib `http.client`).

httpx and its company cost the probe about 7 MiB on top of a pass that has
already loaded aiortc; the upload runs in the same process right after the
pass, so that cost lands on the probe's peak memory. These few requests need
none of it: one keep-alive connection per collector, timeouts, TLS with the
system trust store (or `$SSL_CERT_FILE`), and errors as a small closed set.
"""

from __future__ import annotations

import http.client
import json as jsonlib
import socket
import ssl
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any
from urllib.parse import urlencode, urlsplit

import probe

CONNECT_TIMEOUT = 10.0
READ_TIMEOUT = 60.0
# a collector answers a batch of 1,000 records in well under 1 MiB: a larger
# answer is not its own (an on-path box), and must not fill a Pi's memory
MAX_BODY = 8 * 1024 * 1024


class HttpError(Exception):
    """A request that got no HTTP answer."""


class InvalidURL(HttpError):
    pass


class UnsupportedProtocol(HttpError):
    pass


class ConnectError(HttpError):
    pass


class Timeout(HttpError):
    pass


class ConnectTimeout(Timeout):
    """No connection within the connect timeout: nothing of the request left."""


class WriteTimeout(Timeout):
    """The request was not all sent in time: the link (or the server's reading)
    is slower than its size needs; a smaller request may pass."""


class NotHttp(ConnectError):
    """The server answered with bytes that are not an HTTP response."""


@dataclass
class Response:
    status_code: int
    reason_phrase: str
    content: bytes
    headers: dict[str, str] = field(default_factory=dict)  # names lower-cased

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")

    def json(self) -> Any:
        """The body as JSON; ValueError when it is not."""
        return jsonlib.loads(self.content)


class Client:
    """One connection per (scheme, host, port), kept alive between requests and
    opened again once when the server closed it in between."""

    def __init__(self, timeout: float = READ_TIMEOUT,
                 connect_timeout: float = CONNECT_TIMEOUT) -> None:
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self._connections: dict[tuple[str, str, int], http.client.HTTPConnection] = {}
        self._ssl: ssl.SSLContext | None = None

    def get(self, url: str, params: dict[str, Any] | None = None,
            headers: dict[str, str] | None = None) -> Response:
        if params:
            url += ("&" if "?" in url else "?") + urlencode(
                {k: v for k, v in params.items() if v is not None})
        return self.request("GET", url, None, headers)

    def post(self, url: str, content: bytes | None = None, json: Any = None,
             headers: dict[str, str] | None = None) -> Response:
        headers = dict(headers or {})
        if json is not None:
            content = jsonlib.dumps(json, separators=(",", ":")).encode()
            headers.setdefault("Content-Type", "application/json")
        return self.request("POST", url, content or b"", headers)

    def request(self, method: str, url: str, body: bytes | None,
                headers: dict[str, str] | None) -> Response:
        scheme, host, port, target = _parts(url)
        sent = {"User-Agent": f"voipwatch-probe/{probe.__version__}",
                "Accept": "application/json", **(headers or {})}
        for attempt in (0, 1):
            connection, fresh = self._connection(scheme, host, port)
            try:
                try:
                    connection.request(method, target, body=body, headers=sent)
                except (BrokenPipeError, ConnectionResetError):
                    # a server may answer before the body is all sent (413 on the
                    # Content-Length) and close: its answer is still there to read
                    if fresh is False and attempt == 0:
                        raise
                except TimeoutError as exc:  # sendall's timeout is for the whole body
                    self._drop(scheme, host, port)
                    raise WriteTimeout("timed out while sending the request") from exc
                answer = connection.getresponse()
                content = answer.read(MAX_BODY + 1)
                if len(content) > MAX_BODY:
                    self._drop(scheme, host, port)  # the rest of it is never read
                    raise HttpError(f"an answer larger than {MAX_BODY} bytes")
                if answer.will_close:
                    self._drop(scheme, host, port)
                return Response(answer.status, answer.reason, content,
                                {k.lower(): v for k, v in answer.getheaders()})
            except (http.client.RemoteDisconnected, BrokenPipeError,
                    ConnectionResetError) as exc:
                self._drop(scheme, host, port)
                if fresh or attempt:  # a reused connection the server closed: once more
                    raise ConnectError(f"connection closed: {exc}") from exc
            except TimeoutError as exc:
                self._drop(scheme, host, port)
                raise Timeout("timed out") from exc
            except ssl.SSLError as exc:
                self._drop(scheme, host, port)
                raise ConnectError(f"TLS: {exc.reason or exc}") from exc
            except (http.client.BadStatusLine, http.client.LineTooLong,
                    http.client.UnknownProtocol) as exc:  # not an HTTP server
                self._drop(scheme, host, port)
                raise NotHttp("not an HTTP answer") from exc
            except (OSError, http.client.HTTPException) as exc:
                self._drop(scheme, host, port)
                raise ConnectError(str(exc) or type(exc).__name__) from exc
        raise AssertionError("unreachable")

    def _connection(self, scheme: str, host: str, port: int
                    ) -> tuple[http.client.HTTPConnection, bool]:
        key = (scheme, host, port)
        connection = self._connections.get(key)
        if connection is not None:
            return connection, False
        if scheme == "https":
            if self._ssl is None:
                self._ssl = ssl.create_default_context()  # system store or $SSL_CERT_FILE
            connection = http.client.HTTPSConnection(host, port, timeout=self.connect_timeout,
                                                     context=self._ssl)
        else:
            connection = http.client.HTTPConnection(host, port, timeout=self.connect_timeout)
        try:
            connection.connect()
        except TimeoutError as exc:
            raise ConnectTimeout("timed out while connecting") from exc
        except ssl.SSLError as exc:
            raise ConnectError(f"TLS: {exc.reason or exc}") from exc
        except OSError as exc:
            raise ConnectError(exc.strerror or str(exc)) from exc
        if connection.sock is not None:
            connection.sock.settimeout(self.timeout)
            connection.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._connections[key] = connection
        return connection, True

    def _drop(self, scheme: str, host: str, port: int) -> None:
        connection = self._connections.pop((scheme, host, port), None)
        if connection is not None:
            connection.close()

    def close(self) -> None:
        for connection in self._connections.values():
            connection.close()
        self._connections.clear()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()


def _parts(url: str) -> tuple[str, str, int, str]:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise InvalidURL(str(exc)) from exc
    if parts.scheme not in ("http", "https"):
        raise UnsupportedProtocol(f"{parts.scheme or 'no'} scheme")
    if not parts.hostname:
        raise InvalidURL("no host")
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return parts.scheme, parts.hostname, port or (443 if parts.scheme == "https" else 80), target
