"""Fetching a URL for ``python -m qa add``: the standard library only, and careful.

- http and https only, at every hop; redirects are followed here (at most ``MAX_REDIRECTS``), each
  one checked again, so a redirect to ``file://``, ``ftp://`` or a private address is refused.
- The host is resolved once and every address it resolves to must be public (not private,
  loopback, link-local, multicast, reserved or unspecified) unless ``allow_private``; the
  connection then goes to the checked address itself (a second lookup cannot point elsewhere).
  No proxy from the environment is used.
- ``timeout`` bounds each request (connecting, the answer's headers and the whole body), so a
  server trickling bytes cannot hold the fetch forever. DNS lookups are the system's.
- The body is read up to ``max_bytes`` + 1 bytes (a bigger ``Content-Length`` is refused before
  reading); compressed bodies count after decompression.
- Only the content types ``CONTENT_TYPES`` are accepted (checked before the body is read).

Every failure is an ``InputError`` naming the URL (shortened) and the reason.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
import time
import zlib
from dataclasses import dataclass
from urllib.parse import quote, urljoin, urlsplit

from ..errors import InputError, shorten

USER_AGENT = "qa-news/0.1"
MAX_REDIRECTS = 5
CONTENT_TYPES = frozenset(
    {
        "text/html",
        "application/xhtml+xml",
        "application/rss+xml",
        "application/atom+xml",
        "application/xml",
        "text/xml",
        "application/pdf",
        "text/plain",
    }
)
_REDIRECT_CODES = frozenset({301, 302, 303, 307, 308})
_CHUNK = 65_536
_PATH_SAFE = "/%:@!$&'()*+,;=~-._"
_QUERY_SAFE = _PATH_SAFE + "?"


@dataclass(frozen=True)
class _Target:
    """A checked http(s) URL, split for http.client."""

    url: str
    scheme: str
    host: str  # ASCII (IDNA), no brackets
    port: int
    path: str  # path and query, percent-encoded


def fetch(
    url: str, *, timeout: float = 10.0, max_bytes: int = 10_000_000, allow_private: bool = False
) -> tuple[bytes, str, str]:
    """(body, content type, final URL) of an http(s) URL, following at most ``MAX_REDIRECTS``
    redirects. ``timeout``: seconds for each request; ``max_bytes``: the largest body accepted;
    ``allow_private``: allow private, loopback and link-local addresses. InputError on any failure."""
    if not isinstance(url, str):
        raise InputError(f"a URL must be a string, not {type(url).__name__}")
    url = current = url.strip()
    for hop in range(MAX_REDIRECTS + 1):
        where = _short(url) if hop == 0 else f"{_short(url)} (redirected to {_short(current)})"
        target = _check_url(current, where)
        status, headers, body = _request(target, where, timeout, max_bytes, allow_private)
        if status in _REDIRECT_CODES:
            current = _redirect(target, headers, where)
            continue
        return body, headers.get("content-type", ""), target.url
    raise InputError(f"{_short(url)}: more than {MAX_REDIRECTS} redirects (last one to {_short(current)})")


def _short(url: str) -> str:
    return shorten(url, 100, middle=True)


def _check_url(url: str, where: str) -> _Target:
    """``url`` split into a _Target; InputError (naming ``where``) when it is not an http(s) URL
    with a host."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as e:
        raise InputError(f"{where}: not a valid URL ({e})") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise InputError(f"{where}: only http and https URLs are fetched, not {scheme or 'a URL without a scheme'!r}")
    if not parts.hostname:
        raise InputError(f"{where}: the URL has no host name")
    if parts.username is not None or parts.password is not None:
        raise InputError(f"{where}: URLs with a user name or password are not fetched")
    try:
        host = parts.hostname.encode("idna").decode("ascii") if not parts.hostname.isascii() else parts.hostname
    except UnicodeError:
        raise InputError(f"{where}: the host name {parts.hostname!r} is not valid") from None
    path = quote(parts.path or "/", safe=_PATH_SAFE)
    if parts.query:
        path += "?" + quote(parts.query, safe=_QUERY_SAFE)
    clean = parts._replace(fragment="").geturl()
    return _Target(clean, scheme, host, port or (443 if scheme == "https" else 80), path)


def _resolve(target: _Target, where: str, allow_private: bool) -> list[str]:
    """The IP addresses of ``target.host``; InputError when it does not resolve or (unless
    ``allow_private``) any address is not public."""
    try:
        infos = socket.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError, OSError) as e:
        raise InputError(f"{where}: cannot resolve the host {target.host!r} ({e})") from None
    addresses = list(dict.fromkeys(info[4][0] for info in infos))
    if not addresses:
        raise InputError(f"{where}: the host {target.host!r} has no address")
    if not allow_private:
        for address in addresses:
            kind = _non_public(address)
            if kind:
                what = address if address == target.host else f"{target.host!r}: it resolves to {address}"
                raise InputError(
                    f"{where}: refusing to fetch from {what}, a {kind} address "
                    "(set fetch_private to allow local and intranet addresses)"
                )
    return addresses


def _non_public(address: str) -> str | None:
    """Why ``address`` is not a public address ("loopback", "private", ...), None when it is."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return "malformed"
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    for attribute, kind in (
        ("is_unspecified", "unspecified"),
        ("is_loopback", "loopback"),
        ("is_link_local", "link-local"),
        ("is_multicast", "multicast"),
        ("is_reserved", "reserved"),
        ("is_private", "private"),
    ):
        if getattr(ip, attribute):
            return kind
    return None if ip.is_global else "non-public"


def _redirect(target: _Target, headers: dict[str, str], where: str) -> str:
    """The absolute URL a redirect points to; InputError when it has no Location."""
    location = headers.get("location", "").strip()
    if not location:
        raise InputError(f"{where}: HTTP redirect without a Location header")
    return urljoin(target.url, location)


def _request(
    target: _Target, where: str, timeout: float, max_bytes: int, allow_private: bool
) -> tuple[int, dict[str, str], bytes]:
    """(status, headers with lower-case names, body) of one GET; the body is read only for a 200
    answer with an accepted content type. InputError (naming ``where``) for any other answer or
    failure."""
    addresses = _resolve(target, where, allow_private)
    deadline = time.monotonic() + timeout
    conn = _connection(target, addresses, timeout)
    try:
        conn.request("GET", target.path, headers=_request_headers())
        _limit(conn, deadline)
        response = conn.getresponse()
        headers = {k.lower(): v for k, v in response.getheaders()}
        if response.status in _REDIRECT_CODES:
            return response.status, headers, b""
        if response.status != 200:
            raise InputError(f"{where}: the server answered HTTP {response.status} {response.reason}".rstrip())
        content_type = _check_content_type(headers.get("content-type", ""), where)
        headers["content-type"] = content_type
        body = _read_body(response, conn, headers, max_bytes, deadline, where)
        return response.status, headers, body
    except TimeoutError:
        raise InputError(f"{where}: timed out: no complete answer within {timeout:g} s") from None
    except ssl.SSLError as e:
        raise InputError(f"{where}: TLS failed ({e.reason or e})") from None
    except (OSError, http.client.HTTPException) as e:
        raise InputError(f"{where}: the request failed ({type(e).__name__}: {shorten(e, 100)})") from None
    finally:
        conn.close()


def _request_headers() -> dict[str, str]:
    return {
        "User-Agent": USER_AGENT,
        "Accept": ", ".join(sorted(CONTENT_TYPES)) + ", */*;q=0.1",
        "Accept-Encoding": "identity",
        "Connection": "close",
    }


def _check_content_type(value: str, where: str) -> str:
    """The media type of a Content-Type header (lower case, parameters kept); InputError when it
    is missing or not one of ``CONTENT_TYPES``."""
    kind = value.split(";", 1)[0].strip().lower()
    if not kind:
        raise InputError(f"{where}: the server sent no content type")
    if kind not in CONTENT_TYPES:
        raise InputError(
            f"{where}: content type {shorten(kind, 60)!r} is not a web page, feed, PDF or text "
            f"(accepted: {', '.join(sorted(CONTENT_TYPES))})"
        )
    return value.strip()


def _read_body(response, conn, headers: dict[str, str], max_bytes: int, deadline: float, where: str) -> bytes:
    """The body, at most ``max_bytes`` (after decompression), read before ``deadline``."""
    too_big = f"{where}: the answer is larger than the limit of {max_bytes:,} bytes"
    length = headers.get("content-length", "").strip()
    if length.isdigit() and int(length) > max_bytes:
        raise InputError(f"{too_big} (Content-Length: {int(length):,})")
    decoder = _decoder(headers.get("content-encoding", ""), where)
    chunks: list[bytes] = []
    size = 0
    while True:
        _limit(conn, deadline)
        raw = response.read1(_CHUNK)  # one socket read: read() would wait for all _CHUNK bytes
        if not raw:
            break
        data = decoder(raw, max_bytes + 1 - size) if decoder else raw
        chunks.append(data)
        size += len(data)
        if size > max_bytes:
            raise InputError(too_big)
    return b"".join(chunks)


def _limit(conn: http.client.HTTPConnection, deadline: float) -> None:
    """Let the connection's next socket operation wait only until ``deadline`` (TimeoutError when
    it has passed)."""
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError
    if conn.sock is not None:
        conn.sock.settimeout(left)


def _decoder(encoding: str, where: str):
    """None for an identity body; else a function (compressed bytes, room) -> decompressed bytes
    (at most ``room``) for gzip and deflate. InputError for another encoding."""
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        return None
    if encoding not in ("gzip", "x-gzip", "deflate"):
        raise InputError(f"{where}: content encoding {shorten(encoding, 40)!r} is not supported")
    state = zlib.decompressobj(16 + zlib.MAX_WBITS if "gzip" in encoding else zlib.MAX_WBITS)

    def decode(raw: bytes, room: int) -> bytes:
        try:
            return state.decompress(raw, room)
        except zlib.error as e:
            raise InputError(f"{where}: the {encoding} body is corrupt ({e})") from None

    return decode


class _PinnedHTTP(http.client.HTTPConnection):
    """An HTTP connection to ``host`` that connects to the addresses already checked."""

    def __init__(self, host: str, port: int, addresses: list[str], timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self._addresses = addresses
        self._create_connection = self._connect_checked

    def _connect_checked(self, _address, timeout, source_address=None) -> socket.socket:
        return _connect_any(self._addresses, self.port, timeout, source_address)


class _PinnedHTTPS(http.client.HTTPSConnection):
    """As _PinnedHTTP, with TLS (certificate checked against ``host``, which is also sent as SNI)."""

    def __init__(self, host: str, port: int, addresses: list[str], timeout: float) -> None:
        super().__init__(host, port, timeout=timeout, context=ssl.create_default_context())
        self._addresses = addresses
        self._create_connection = self._connect_checked

    def _connect_checked(self, _address, timeout, source_address=None) -> socket.socket:
        return _connect_any(self._addresses, self.port, timeout, source_address)


def _connection(target: _Target, addresses: list[str], timeout: float) -> http.client.HTTPConnection:
    cls = _PinnedHTTPS if target.scheme == "https" else _PinnedHTTP
    return cls(target.host, target.port, addresses, timeout)


def _connect_any(addresses: list[str], port: int, timeout, source_address) -> socket.socket:
    """A socket connected to the first of ``addresses`` that answers."""
    error: OSError | None = None
    for address in addresses:
        try:
            return socket.create_connection((address, port), timeout, source_address)
        except OSError as e:
            error = e
    raise error or OSError("no address to connect to")
