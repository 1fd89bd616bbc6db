"""ghcr.io and quay.io as their users meet them, emulated on loopback in front of docker-registry.

Neither registry can be reached from here, so their publicly documented and reported behaviour
is reproduced by a front (`RegistryFront`, on 127.0.0.1) that speaks for a real, anonymous
docker-registry, and a blob store (`BlobStore`, on 127.0.0.2: another host) that blobs are
redirected to:

ghcr.io (profile "ghcr")
- Every /v2/ request without a bearer token is answered `401` with
  `WWW-Authenticate: Bearer realm="https://ghcr.io/token",service="ghcr.io",
  scope="repository:<owner>/<image>:pull"` (curl transcript in toddysm.com, "Authenticating with
  OCI Registries - GitHub Container Registry (GHCR) Implementation", 2024-02-12/2024-03-04, and
  Mic92/niks3#229). Public images still need a token: an anonymous
  `GET /token?service=ghcr.io&scope=repository:<repo>:pull` returns `{"token": ...}`, without
  `expires_in` (same blog post; richlander/container-registry-api ghcr.md). For an image that is
  not public the anonymous token request itself is answered 401 (openai/tunnel-client#75).
  Credentials go to the token endpoint as HTTP Basic (username, PAT).
- A blob GET is answered `307` to object storage on another host
  (containerd/stargz-snapshotter#167: github-production-container-registry.s3.amazonaws.com).

quay.io (profile "quay")
- The challenge's realm is `https://quay.io/v2/auth`, service `quay.io` (jdx/mise#9273 review;
  quay/mirror-registry#71 shows `/v2/auth?service=...&scope=repository:<ns>/<repo>:pull`);
  anonymous tokens are issued for public repositories (quay/quay#6576: "anonymous public pulls").
- A blob GET is answered `302` to a signed CDN URL (`cdn0N.quay.io/...?X-Amz-...`,
  rpardini/docker-registry-proxy#26, oras-project/rust-oci-client#226).

Both blob stores reject a request that carries an Authorization header besides the signed
query, as S3 does ("Only one auth mechanism allowed", renovatebot/renovate#3877), and record
every request's headers so a test can show that no registry token reached them. Range requests
pass through (S3 and CDNs honour them).
"""

from __future__ import annotations

import base64
import http.client
import http.server
import re
import secrets
import threading
import urllib.parse
from dataclasses import dataclass
from typing import Any

STORE_HOST = "127.0.0.2"  # "another host" on loopback: requests drops auth across hosts
TIMEOUT_SECONDS = 30


@dataclass(frozen=True)
class Profile:
    name: str
    service: str
    token_path: str
    redirect_status: int
    anonymous_private_status: int  # what an anonymous token request for a private repo gets


GHCR = Profile("ghcr", "ghcr.io", "/token", 307, 401)
QUAY = Profile("quay", "quay.io", "/v2/auth", 302, 401)


@dataclass
class Seen:
    path: str
    authorization: str | None
    range: str | None = None


@dataclass
class _Server:
    server: http.server.ThreadingHTTPServer
    thread: threading.Thread

    @classmethod
    def start(cls, host: str, handler: type[http.server.BaseHTTPRequestHandler]) -> _Server:
        server = http.server.ThreadingHTTPServer((host, 0), handler)
        server.daemon_threads = True
        thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        thread.start()
        return cls(server, thread)

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = TIMEOUT_SECONDS

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib's name
        pass

    def answer(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def upstream(self, host: str, path: str, headers: dict[str, str]) -> None:
        """Forward a GET/HEAD to docker-registry and relay its answer."""
        conn = http.client.HTTPConnection(host, timeout=TIMEOUT_SECONDS)
        try:
            conn.request(self.command, path, headers=headers)
            response = conn.getresponse()
            body = response.read() if self.command != "HEAD" else b""
            kept = {
                k: v
                for k, v in response.getheaders()
                if k.lower() not in ("connection", "transfer-encoding", "content-length")
            }
            if self.command == "HEAD":
                kept["Content-Length"] = response.getheader("Content-Length", "0")
                self.send_response(response.status)
                for key, value in kept.items():
                    self.send_header(key, value)
                self.end_headers()
                return
            self.answer(response.status, body, kept)
        finally:
            conn.close()


class BlobStore:
    """Object storage on 127.0.0.2: serves blobs at signed URLs, refuses Authorization headers."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.seen: list[Seen] = []
        self._signatures: dict[str, str] = {}  # signature -> registry path
        self._lock = threading.Lock()
        self._server = _Server.start(STORE_HOST, self._handler())
        self.host = f"{STORE_HOST}:{self._server.port}"

    def sign(self, registry_path: str) -> str:
        signature = secrets.token_hex(16)
        with self._lock:
            self._signatures[signature] = registry_path
        return f"http://{self.host}/blobs?X-Amz-Signature={signature}&X-Amz-Expires=600"

    def close(self) -> None:
        self._server.close()

    def _handler(self) -> type[http.server.BaseHTTPRequestHandler]:
        store = self

        class Handler(_Handler):
            def do_GET(self) -> None:
                given = self.headers.get("Authorization")
                with store._lock:
                    store.seen.append(Seen(self.path, given, self.headers.get("Range")))
                query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
                signature = (query.get("X-Amz-Signature") or [""])[0]
                with store._lock:
                    target = store._signatures.get(signature)
                if given is not None:
                    return self.answer(400, b"InvalidArgument: Only one auth mechanism allowed")
                if target is None:
                    return self.answer(403, b"AccessDenied")
                headers = {"Range": self.headers["Range"]} if "Range" in self.headers else {}
                self.upstream(store.upstream, target, headers)

        return Handler


class RegistryFront:
    """A registry that answers as `profile` does, in front of an anonymous docker-registry."""

    def __init__(self, upstream: str, profile: Profile, *, username: str, password: str) -> None:
        self.upstream = upstream
        self.profile = profile
        self.username = username
        self.password = password
        self.public: set[str] = set()  # repositories anyone may pull
        self.token_requests: list[tuple[dict[str, list[str]], bool]] = []
        self.seen: list[Seen] = []  # every request to the front (token service included)
        self.store = BlobStore(upstream)
        self._tokens: dict[str, tuple[set[str], bool]] = {}  # token -> (pullable repos, pushable)
        self._lock = threading.Lock()
        self._server = _Server.start("127.0.0.1", self._handler())
        self.host = f"127.0.0.1:{self._server.port}"

    @property
    def realm(self) -> str:
        return f"http://{self.host}{self.profile.token_path}"

    def close(self) -> None:
        self._server.close()
        self.store.close()

    def _issue(self, query: dict[str, list[str]], authorization: str | None) -> tuple[int, bytes]:
        expected = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
        authenticated = authorization == f"Basic {expected}"
        with self._lock:
            self.token_requests.append((query, authorization is not None))
        if authorization is not None and not authenticated:
            return 401, b'{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}'
        repos = set()
        for scope in query.get("scope", []):
            match = re.fullmatch(r"repository:([^:]+):([a-z,*]+)", scope)
            if match is None:
                continue
            repo = match.group(1)
            if authenticated or repo in self.public:
                repos.add(repo)
            else:
                return self.profile.anonymous_private_status, (
                    b'{"errors":[{"code":"DENIED","message":"requested access to the resource '
                    b'is denied"}]}'
                )
        token = secrets.token_urlsafe(24)
        with self._lock:
            self._tokens[token] = (repos, authenticated)
        return 200, b'{"token":"' + token.encode() + b'"}'  # ghcr sends no expires_in

    def _handler(self) -> type[http.server.BaseHTTPRequestHandler]:
        front = self

        class Handler(_Handler):
            def do_GET(self) -> None:
                parts = urllib.parse.urlsplit(self.path)
                with front._lock:
                    front.seen.append(Seen(self.path, self.headers.get("Authorization")))
                if parts.path == front.profile.token_path:
                    status, body = front._issue(
                        urllib.parse.parse_qs(parts.query), self.headers.get("Authorization")
                    )
                    return self.answer(status, body, {"Content-Type": "application/json"})
                if parts.path in ("/v2", "/v2/"):
                    # the version check clients ping first (distribution-spec end-1: 200, or
                    # 401 where authentication is required; the token-auth spec's step 1):
                    # both registries answer it 401 with a Bearer challenge naming no scope
                    challenge = f'Bearer realm="{front.realm}",service="{front.profile.service}"'
                    return self.answer(
                        401,
                        b'{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}',
                        {"WWW-Authenticate": challenge, "Content-Type": "application/json"},
                    )
                match = re.match(r"/v2/(.+?)/(manifests|blobs)/([^/?]+)$", parts.path)
                if match is None:
                    return self.answer(404, b"")
                repo, kind = match.group(1), match.group(2)
                given = self.headers.get("Authorization", "")
                with front._lock:
                    granted = front._tokens.get(given.removeprefix("Bearer "), (set(), False))
                if repo not in granted[0]:
                    challenge = (
                        f'Bearer realm="{front.realm}",service="{front.profile.service}",'
                        f'scope="repository:{repo}:pull"'
                    )
                    body = (
                        b'{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}'
                    )
                    return self.answer(
                        401,
                        body,
                        {"WWW-Authenticate": challenge, "Content-Type": "application/json"},
                    )
                if kind == "blobs" and self.command == "GET":
                    location = front.store.sign(parts.path)
                    return self.answer(front.profile.redirect_status, b"", {"Location": location})
                headers = {"Accept": self.headers.get("Accept", "*/*")}
                self.upstream(front.upstream, self.path, headers)

            do_HEAD = do_GET

        return Handler
