"""A fault-injecting HTTP proxy on 127.0.0.1 in front of a real (plain-HTTP) registry.

Faults are `Rule`s, each bounded in count (`times`) and in time (`seconds` after it was added):
it applies to the requests matching `method`, `path` (a regex searched in path+query) and `when`
(a test of the request headers, names in lower case, e.g. content-length) after the first
`skip` of them, and then to every `every`-th one (1: each). Actions:

- `respond`: answer `status`/`headers`/`body` itself, never forwarding (5xx, 429 + Retry-After).
- `respond`: with `current_range`, the answer also carries the upload's `Range`/`Location` as
  the registry states them (asked with a GET): a registry refusing a chunk it will not take.
- `reset`: take `fraction` of the request body (or `take` bytes), then abort with a TCP RST
  (mid-body reset).
- `stall`: hold the whole request `delay` seconds before forwarding, past the client's read
  timeout; a request whose client hung up meanwhile is dropped, not forwarded (nginx's default).
- `truncate`: forward, then send only `fraction` of the answer's bytes (status line, headers and
  body as serialized) and close: a response cut short, after the registry acted.
- `reset-after`: forward, then RST instead of answering (the registry acted, the client never
  hears). `corrupt`: flip the first byte of the body before forwarding.
- `hold`: take `fraction` of the body, set `rule.fired`, then wait (at most `delay` seconds) for
  the client to go away: a point at which a test kills the client mid-upload. `rule.finished`
  is set once the proxy is done with the request (for every action).
- `hook`: call `rule.hook()` in the proxy thread, then forward (e.g. restart the registry).
- `rewrite`: forward, then change the answer as another registry would: its status to
  `answer_status` (if set), `headers` added, and with `stick_range` the `Range` of an upload
  session stuck at the first value it answered (tests/support/emulated.py uses these).
- `corrupt-answer`: forward, then flip the answer's body byte at `fraction` of its length (a
  blob whose bytes do not match its digest). `hold-answer`: forward, send the headers and
  `fraction` of the answer's body, set `rule.fired`, then wait (at most `delay` seconds) for the
  client to go away, and reset: a download a test kills midway.

A GET answer larger than 1 MiB with a Content-Length (a blob) is passed on as it arrives from
the registry, and `truncate` stops it at its cut: the client reads while the registry sends, as
through any network, and a cut answer is not read whole from the registry first. Smaller
answers are read whole, then sent.

By default the proxy buffers each request body and forwards only complete requests, as nginx's
`proxy_request_buffering on` (its default) does: a client killed mid-body never reaches the
registry. With `buffer_requests=False` bodies stream through as they arrive, and a client that
goes away mid-body leaves the registry a short body (the `hold` rule then forwards its part).

Used as a forward proxy (HTTP_PROXY), it forwards every plain request to its upstream whatever
host the client named, and logs the absolute URL (so the scheme and host the client used); an
HTTPS attempt is a CONNECT, logged and refused (501).

Every request is logged (`log`: method, path, request bytes received, status, fault) and bytes
are counted as they arrive, so a test can tell what a client sent. Upstream calls have timeouts;
every wait is bounded.
"""

from __future__ import annotations

import collections
import contextlib
import http.client
import http.server
import re
import select
import socket
import struct
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

ACTIONS = frozenset(
    {
        "respond",
        "reset",
        "stall",
        "truncate",
        "reset-after",
        "corrupt",
        "hold",
        "hook",
        "rewrite",
        "corrupt-answer",
        "hold-answer",
    }  # fmt: skip
)
MAX_DELAY_SECONDS = 30.0
UPSTREAM_TIMEOUT_SECONDS = 30.0
CLIENT_TIMEOUT_SECONDS = 30.0
_BLOCK = 64 * 1024
_STREAM_OVER = 1024 * 1024  # GET answers over this many bytes pass through block by block
_LEGACY_ACTIONS = {"reset-before": "reset"}  # tests written against the first proxy


@dataclass
class Rule:
    """One fault; see the module docstring. `label` names its kind in reports (e.g. "5xx")."""

    action: str
    method: str | None = None
    path: str = ""
    skip: int = 0
    times: int = 1
    seconds: float = 60.0
    status: int = 503
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    delay: float = 0.0
    fraction: float = 0.5
    label: str = ""
    hook: Callable[[], None] | None = field(default=None, repr=False)
    every: int = 1
    take: int | None = None  # `reset`: bytes of the body to take (instead of `fraction`)
    when: Callable[[Mapping[str, str]], bool] | None = field(default=None, repr=False)
    current_range: bool = False
    answer_status: int | None = None
    stick_range: bool = False
    matched: int = 0
    injected: int = 0
    added: float = field(default_factory=time.monotonic)
    fired: threading.Event = field(default_factory=threading.Event, repr=False)
    finished: threading.Event = field(default_factory=threading.Event, repr=False)

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise ValueError(f"unknown fault action {self.action!r}")
        if self.times < 0 or self.seconds <= 0 or not 0.0 <= self.fraction <= 1.0:
            raise ValueError("a rule needs times >= 0, seconds > 0 and 0 <= fraction <= 1")
        if self.every < 1 or (self.take is not None and self.take < 0):
            raise ValueError("a rule needs every >= 1 and take >= 0")
        self.delay = min(self.delay, MAX_DELAY_SECONDS)
        self.label = self.label or self.action
        self._pattern = re.compile(self.path)

    def matches(self, method: str, path: str, headers: Mapping[str, str]) -> bool:
        return (
            (self.method is None or self.method == method)
            and bool(self._pattern.search(path))
            and (self.when is None or self.when(headers))
        )

    def due(self) -> bool:
        """Past `skip`, and on an `every`-th match (counted from the first after `skip`)."""
        return self.matched > self.skip and (self.matched - self.skip - 1) % self.every == 0

    def live(self, now: float) -> bool:
        return self.injected < self.times and now < self.added + self.seconds

    def part(self, length: int) -> int:
        """How much of a `length`-byte body a `reset`/`hold` takes."""
        return min(self.take, length) if self.take is not None else int(length * self.fraction)


@dataclass
class Exchange:
    """One request as the proxy saw it."""

    method: str
    path: str
    length: int  # the request's Content-Length
    received: int = 0  # request body bytes that actually arrived from the client
    status: int | None = None  # what the client was answered (None: no complete answer)
    sent: int = 0  # answer body bytes written to the client (partial answers included)
    range: str | None = None  # the request's Range header (a resumed download)
    fault: str | None = None  # the action applied
    label: str | None = None
    forwarded: bool = False
    answer_range: str | None = None  # the Range header the client was answered

    @property
    def body_length(self) -> int:  # the first proxy's name for it
        return self.received


class _ClientGone(Exception):
    """The client closed its connection before sending the whole body."""


class FaultProxy:
    """The proxy; `host` is its `127.0.0.1:PORT`. Use as a context manager or `close()` it.

    The Host header is passed through, so the registry's absolute Location URLs point back at
    the proxy. With `relative_locations`, Location headers are rewritten to path+query.
    """

    def __init__(
        self,
        upstream: str,
        *,
        relative_locations: bool = False,
        buffer_requests: bool = True,
    ) -> None:
        self.upstream = upstream
        self.relative_locations = relative_locations
        self.buffer_requests = buffer_requests
        self.rules: list[Rule] = []
        self.log: list[Exchange] = []
        self.stuck_ranges: dict[str, str] = {}  # upload session -> the Range it keeps answering
        self._lock = threading.Lock()
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        self.host = f"127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5.0)

    # -- rules -------------------------------------------------------------------------------

    def add(self, action: str, **kwargs: Any) -> Rule:
        """Add a Rule (keyword arguments as its fields); returns it (see `fired`, `injected`)."""
        rule = Rule(action, **kwargs)
        with self._lock:
            self.rules.append(rule)
        return rule

    def add_fault(self, method: str, nth: int, action: str, **kwargs: Any) -> Rule:
        """The first proxy's API: `action` on the `nth` request of `method` (from 1)."""
        action = _LEGACY_ACTIONS.get(action, action)
        if action == "reset":
            kwargs.setdefault("fraction", 1.0)
        return self.add(action, method=method, skip=nth - 1, times=1, **kwargs)

    def clear_rules(self) -> None:
        with self._lock:
            self.rules.clear()

    def _choose(self, method: str, path: str, headers: Mapping[str, str]) -> Rule | None:
        now = time.monotonic()
        chosen = None
        with self._lock:
            for rule in self.rules:
                if not rule.matches(method, path, headers):
                    continue
                rule.matched += 1
                if chosen is None and rule.due() and rule.live(now):
                    rule.injected += 1
                    chosen = rule
        return chosen

    # -- what went through -------------------------------------------------------------------

    def matching(self, method: str | None = None, path: str = "") -> list[Exchange]:
        """The logged requests of `method` (any if None) whose path+query matches `path`."""
        pattern = re.compile(path)
        with self._lock:
            return [
                e
                for e in self.log
                if (method is None or e.method == method) and pattern.search(e.path)
            ]

    def count(self, method: str | None = None, path: str = "") -> int:
        return len(self.matching(method, path))

    def bytes_received(self, method: str | None = None, path: str = "") -> int:
        """Request body bytes that arrived from clients (partial bodies included)."""
        return sum(e.received for e in self.matching(method, path))

    def bytes_sent(self, method: str | None = None, path: str = "") -> int:
        """Answer body bytes sent to clients (cut-short answers included): what they downloaded."""
        return sum(e.sent for e in self.matching(method, path))

    def injected(self) -> dict[str, int]:
        """Faults injected so far, by rule label."""
        counts: collections.Counter[str] = collections.Counter()
        with self._lock:
            for rule in self.rules:
                counts[rule.label] += rule.injected
        return dict(counts)

    def forget(self) -> None:
        """Clear the log (and so the byte counts), e.g. between two runs of a client."""
        with self._lock:
            self.log.clear()

    def _record(self, entry: Exchange) -> None:
        with self._lock:
            self.log.append(entry)


def _handler_for(proxy: FaultProxy) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        timeout = CLIENT_TIMEOUT_SECONDS
        _entry: Exchange | None = None

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib's name
            pass

        def _handle(self) -> None:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                self.close_connection = True
                return self._reply(411, [], b"Content-Length required")
            length = int(self.headers.get("Content-Length") or 0)
            headers = {k.lower(): v for k, v in self.headers.items()}
            rule = proxy._choose(self.command, self.path, headers)
            entry = Exchange(self.command, self.path, length, range=self.headers.get("Range"))
            self._entry = entry
            if rule is not None:
                entry.fault, entry.label = rule.action, rule.label
                if rule.action not in ("hold", "hold-answer"):
                    rule.fired.set()
            proxy._record(entry)
            try:
                self._serve(rule, entry, length)
            except _ClientGone:
                self.close_connection = True
            except OSError:
                self.close_connection = True
            finally:
                if rule is not None:
                    rule.finished.set()

        def _serve(self, rule: Rule | None, entry: Exchange, length: int) -> None:
            action = rule.action if rule is not None else None
            if rule is not None and action in ("reset", "hold"):
                return self._cut(rule, entry, length)
            if not proxy.buffer_requests and length and action is None:
                return self._stream(entry, length)
            body = self._receive(entry, length)
            if rule is not None and action == "respond":
                self.close_connection = True
                entry.status = rule.status
                headers = list(rule.headers.items())
                if rule.current_range:
                    headers += self._current_range()
                return self._reply(rule.status, headers, rule.body)
            if rule is not None and action == "corrupt" and body:
                body = bytes([body[0] ^ 0xFF]) + body[1:]
            if rule is not None and action == "stall":
                time.sleep(rule.delay)
                if self._client_gone():
                    self.close_connection = True
                    return None
            if rule is not None and action == "hook" and rule.hook is not None:
                rule.hook()
            if self.command == "GET" and action in (None, "truncate"):
                return self._forward_get(rule, entry, body)
            try:
                status, headers, answer = self._forward(body)
            except OSError:
                return self._unreachable(entry)
            entry.forwarded = True
            if rule is not None and action == "reset-after":
                return self._reset()
            if rule is not None and action == "rewrite":
                status, headers = self._rewrite(rule, status, headers)
            if rule is not None and action == "truncate":  # of another method than GET
                return self._pass_on(rule, entry, status, headers, len(answer), iter([answer]))
            if rule is not None and action == "hold-answer":
                raw = self._serialize(status, headers, answer)
                entry.sent = int(len(answer) * rule.fraction)
                self.wfile.write(raw[: len(raw) - len(answer) + entry.sent])
                self.wfile.flush()
                rule.fired.set()
                self._wait_client_gone(entry, rule.delay)
                return self._reset()
            if rule is not None and action == "corrupt-answer" and answer:
                at = min(len(answer) - 1, int(len(answer) * rule.fraction))
                answer = answer[:at] + bytes([answer[at] ^ 0xFF]) + answer[at + 1 :]
            entry.status = status
            entry.sent = len(answer) if self.command != "HEAD" else 0
            return self._reply(status, headers, answer)

        # -- request bodies --------------------------------------------------------------------

        def _receive(self, entry: Exchange, length: int, limit: int | None = None) -> bytes:
            """Read the body (or its first `limit` bytes), counting; _ClientGone if cut short."""
            want = length if limit is None else min(limit, length)
            body = bytearray()
            while len(body) < want:
                block = self.rfile.read(min(_BLOCK, want - len(body)))
                if not block:
                    raise _ClientGone()
                body += block
                entry.received += len(block)
            return bytes(body)

        def _cut(self, rule: Rule, entry: Exchange, length: int) -> None:
            """`reset`/`hold`: take part of the body, then drop the request (never answered)."""
            part = rule.part(length)
            upstream = None
            if rule.action == "hold" and not proxy.buffer_requests and length:
                upstream = self._open_upstream()
            try:
                body = self._receive(entry, length, part)
                if upstream is not None:
                    upstream.send(body)
                if rule.action == "hold":
                    rule.fired.set()
                    self._wait_client_gone(entry, rule.delay)
            finally:
                if upstream is not None:
                    upstream.close()  # the registry sees the body end early
            self._reset()

        def _wait_client_gone(self, entry: Exchange, seconds: float) -> None:
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                readable, _, _ = select.select([self.connection], [], [], 0.1)
                if not readable:
                    continue
                try:
                    block = self.connection.recv(_BLOCK)
                except OSError:
                    return
                if not block:
                    return
                entry.received += len(block)

        def _client_gone(self) -> bool:
            readable, _, _ = select.select([self.connection], [], [], 0)
            if not readable:
                return False
            try:
                peeked: bytes = self.connection.recv(1, socket.MSG_PEEK)
            except OSError:
                return True
            return peeked == b""

        # -- other registries' answers --------------------------------------------------------

        def _current_range(self) -> list[tuple[str, str]]:
            """The upload's Range and Location as the registry states them now (GET)."""
            conn = http.client.HTTPConnection(proxy.upstream, timeout=UPSTREAM_TIMEOUT_SECONDS)
            try:
                conn.request(
                    "GET", self.path, headers=self._headers_out() | {"Content-Length": "0"}
                )
                response = conn.getresponse()
                response.read()
                return [
                    (k, v) for k, v in response.getheaders() if k.lower() in ("range", "location")
                ]
            finally:
                conn.close()

        def _rewrite(
            self, rule: Rule, status: int, headers: list[tuple[str, str]]
        ) -> tuple[int, list[tuple[str, str]]]:
            if rule.answer_status is not None and 200 <= status < 300:
                status = rule.answer_status
            added = {k.lower() for k in rule.headers}
            kept = [(k, v) for k, v in headers if k.lower() not in added]
            kept += list(rule.headers.items())
            if rule.stick_range:
                session = urllib.parse.urlsplit(self.path).path.rsplit("/", 1)[-1]
                for index, (key, value) in enumerate(kept):
                    if key.lower() == "range":
                        with proxy._lock:
                            stuck = proxy.stuck_ranges.setdefault(session, value)
                        kept[index] = (key, stuck)
            return status, kept

        # -- upstream ------------------------------------------------------------------------

        def _headers_out(self) -> dict[str, str]:
            """The request's headers; repeated ones joined, as HTTP allows (containers/image
            sends one Accept per media type: keeping only the last loses OCI manifests)."""
            out: dict[str, str] = {}
            for key, value in self.headers.items():
                if key.lower() != "connection":
                    out[key] = f"{out[key]}, {value}" if key in out else value
            return out

        def _open_upstream(self) -> http.client.HTTPConnection:
            conn = http.client.HTTPConnection(proxy.upstream, timeout=UPSTREAM_TIMEOUT_SECONDS)
            conn.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
            for key, value in self._headers_out().items():
                conn.putheader(key, value)
            conn.endheaders()
            return conn

        def _stream(self, entry: Exchange, length: int) -> None:
            """Unbuffered: pass the body on as it arrives; a short body reaches the registry."""
            conn = self._open_upstream()
            try:
                remaining = length
                while remaining:
                    block = self.rfile.read(min(_BLOCK, remaining))
                    if not block:
                        raise _ClientGone()
                    entry.received += len(block)
                    remaining -= len(block)
                    conn.send(block)
                status, headers, answer = self._read_answer(conn)
            finally:
                conn.close()
            entry.forwarded, entry.status = True, status
            self._reply(status, headers, answer)

        def _forward(self, body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
            conn = http.client.HTTPConnection(proxy.upstream, timeout=UPSTREAM_TIMEOUT_SECONDS)
            try:
                conn.request(
                    self.command, self.path, body=body or None, headers=self._headers_out()
                )
                return self._read_answer(conn)
            finally:
                conn.close()

        def _forward_get(self, rule: Rule | None, entry: Exchange, body: bytes) -> None:
            """A GET, forwarded (`rule` None) or cut short (`truncate`): the answer is passed on
            block by block as it arrives when it is large, else read whole first."""
            conn = http.client.HTTPConnection(proxy.upstream, timeout=UPSTREAM_TIMEOUT_SECONDS)
            try:
                try:
                    conn.request("GET", self.path, body=body or None, headers=self._headers_out())
                    response = conn.getresponse()
                    headers = self._answer_headers(response)
                    length = _content_length(headers)
                    if length is None or length <= _STREAM_OVER:
                        answer = response.read()
                        blocks: Iterator[bytes] = iter([answer])
                        length = len(answer)
                    else:
                        blocks = iter(lambda: response.read(_BLOCK), b"")
                except OSError:
                    return self._unreachable(entry)
                entry.forwarded = True
                self._pass_on(rule, entry, response.status, headers, length, blocks)
            finally:
                conn.close()

        def _pass_on(
            self,
            rule: Rule | None,
            entry: Exchange,
            status: int,
            headers: list[tuple[str, str]],
            length: int,
            blocks: Iterator[bytes],
        ) -> None:
            """Send the `length`-byte answer, or with `truncate` its first `fraction` of bytes
            as serialized (status line, headers, body), then a reset. An answer the registry
            ended short is reset where it ended."""
            if rule is None:
                entry.status = status
                self._reply_head(status, headers, length)
                left = length
            else:
                head = self._head(status, headers, length)
                cut = int((len(head) + length) * rule.fraction)
                self.wfile.write(head[:cut])
                left = max(0, cut - len(head))
            for block in blocks:
                if left <= 0:
                    break
                self.wfile.write(block[:left])
                entry.sent += min(len(block), left)
                left -= len(block)
            self.wfile.flush()
            if rule is not None or left > 0:
                self._reset()

        def _unreachable(self, entry: Exchange) -> None:
            entry.status = 502
            self.close_connection = True
            return self._reply(502, [], b"upstream unreachable")

        def _read_answer(
            self, conn: http.client.HTTPConnection
        ) -> tuple[int, list[tuple[str, str]], bytes]:
            response = conn.getresponse()
            answer = response.read() if self.command != "HEAD" else b""
            return response.status, self._answer_headers(response), answer

        def _answer_headers(self, response: http.client.HTTPResponse) -> list[tuple[str, str]]:
            kept = []
            for key, value in response.getheaders():
                if key.lower() in ("connection", "transfer-encoding", "keep-alive"):
                    continue
                if key.lower() == "location" and proxy.relative_locations:
                    parts = urllib.parse.urlsplit(value)
                    value = urllib.parse.urlunsplit(("", "", parts.path, parts.query, ""))
                kept.append((key, value))
            return kept

        # -- answers -------------------------------------------------------------------------

        def _serialize(self, status: int, headers: list[tuple[str, str]], body: bytes) -> bytes:
            return self._head(status, headers, len(body)) + (
                body if self.command != "HEAD" else b""
            )

        def _head(self, status: int, headers: list[tuple[str, str]], length: int) -> bytes:
            lines = [f"HTTP/1.1 {status} {self.responses.get(status, ('',))[0]}"]
            lines += [f"{k}: {v}" for k, v in _with_length(headers, length)]
            return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

        def _reply(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
            self._reply_head(status, headers, len(body))
            if self.command != "HEAD":
                self.wfile.write(body)
            self.wfile.flush()

        def _reply_head(self, status: int, headers: list[tuple[str, str]], length: int) -> None:
            if self._entry is not None:
                self._entry.answer_range = next(
                    (v for k, v in headers if k.lower() == "range"), None
                )
            self.send_response_only(status)
            for key, value in _with_length(headers, length):
                self.send_header(key, value)
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()

        def _reset(self) -> None:
            """Abort with a TCP RST, as a crashing proxy or a network fault would."""
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                )
                self.connection.close()

        def finish(self) -> None:
            with contextlib.suppress(OSError, ValueError):
                super().finish()

        do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

        def do_CONNECT(self) -> None:
            """An HTTPS attempt through the proxy used as a forward proxy: logged, refused."""
            proxy._record(Exchange("CONNECT", self.path, 0, status=501))
            self.close_connection = True
            self._reply(501, [], b"no tunnels here")

    return Handler


def _with_length(headers: list[tuple[str, str]], length: int) -> list[tuple[str, str]]:
    if any(k.lower() == "content-length" for k, _ in headers):
        return headers
    return [*headers, ("Content-Length", str(length))]


def _content_length(headers: list[tuple[str, str]]) -> int | None:
    announced = next((v for k, v in headers if k.lower() == "content-length"), "")
    return int(announced) if announced.isdigit() else None


@contextlib.contextmanager
def fault_proxy(upstream: str, **kwargs: Any) -> Iterator[FaultProxy]:
    proxy = FaultProxy(upstream, **kwargs)
    try:
        yield proxy
    finally:
        proxy.close()
