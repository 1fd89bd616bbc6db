"""The one HTTP chokepoint to a registry: a requests.Session with timeouts, retries, auth, TLS.

Every byte the pipeline exchanges with a registry passes through `Transport.request`, so the
policies live in one place: connect+read timeouts on every call, bounded jittered retries for
429/5xx/connection failures (only when the request body can be sent again), the auth dance on
401, credentials only ever sent to the registry's own host, each host's trust and scheme as
access.py decides them, and redacted logging.
"""

from __future__ import annotations

import functools
import logging
import ssl
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urljoin, urlsplit

import requests
import requests.adapters
import requests.utils

from pipeline.core.errors import UsageError
from pipeline.core.reference import is_loopback_registry, validate_registry
from pipeline.registry.access import HostAccess, RegistryAccess, trust
from pipeline.registry.auth import Authenticator
from pipeline.registry.errors import RegistryError, where
from pipeline.registry.redact import install_log_redaction, redact_headers, redact_url
from pipeline.registry.retry import RETRYABLE_STATUSES, RetryPolicy, Timeouts, parse_retry_after

log = logging.getLogger(__name__)

USER_AGENT = "bootc-pipeline/0.1"
# Failures without a (complete) HTTP response: worth retrying when the body can be sent again.
NETWORK_ERRORS = (
    requests.exceptions.ConnectionError,
    requests.exceptions.Timeout,
    requests.exceptions.ChunkedEncodingError,
)


class SizedStream(Protocol):
    """A request body read once, of known length (sources.ChunkReader)."""

    def read(self, size: int | None = -1) -> bytes: ...

    def __len__(self) -> int: ...


# Bodies the transport can send: bytes (replayable) or a sized stream (sent once, never retried).
Body = bytes | SizedStream | None


class ConnectionFailed(RegistryError):
    """No HTTP response at all (reset, refused, timeout); uploads catch it to resume."""

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message, reason=reason)
        self.reason: str = reason


@dataclass(frozen=True)
class Endpoint:
    """Where a registry is and how to reach it: `https://host` unless plain HTTP was allowed."""

    registry: str
    scheme: str

    @property
    def base_url(self) -> str:
        return f"{self.scheme}://{api_host(self.registry)}"

    @classmethod
    def choose(cls, access: HostAccess) -> Endpoint:
        """Apply the TLS policy: verify by default; plain HTTP only to loopback unless forced.

        `force_plain_http` only lifts the loopback restriction of `plain_http`: on its own it
        changes nothing (HTTPS, `ca_bundle` honoured), so credentials never go out unencrypted
        because of it alone.
        """
        registry = access.registry
        validate_registry(registry)
        if access.plain_http and not access.force_plain_http and not is_loopback_registry(registry):
            raise UsageError(
                f"{where(registry)}: plain HTTP is only allowed to loopback registries "
                "(127.0.0.0/8, ::1, localhost)",
                hint="use TLS (with --ca-bundle for a private CA), or force plain HTTP",
            )
        return cls(registry, "http" if access.plain_http else "https")


class TrustAdapter(requests.adapters.HTTPAdapter):
    """HTTPS verified against one SSL context (access.trust), not requests' certifi bundle."""

    def __init__(self, context: ssl.SSLContext) -> None:
        self._context = context
        super().__init__()

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["ssl_context"] = self._context
        super().init_poolmanager(*args, **kwargs)

    def proxy_manager_for(self, *args: Any, **kwargs: Any) -> Any:
        kwargs["ssl_context"] = self._context
        return super().proxy_manager_for(*args, **kwargs)

    def cert_verify(self, conn: Any, url: str, verify: Any, cert: Any) -> None:
        super().cert_verify(conn, url, verify, cert)  # type: ignore[no-untyped-call]
        conn.ca_certs = conn.ca_cert_dir = None  # not certifi's bundle on top: the context is it


class LazyTrust(requests.adapters.BaseAdapter):
    """A TrustAdapter made at the first HTTPS request: building the system's trust store costs
    0.05-0.1 s (README, pull's speed), which a run that meets only plain-HTTP hosts never pays."""

    def __init__(self, context: Callable[[], ssl.SSLContext]) -> None:
        super().__init__()
        self._context = context
        self._adapter: TrustAdapter | None = None
        self._lock = threading.Lock()

    def send(self, request: Any, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            if self._adapter is None:
                self._adapter = TrustAdapter(self._context())
            adapter = self._adapter
        return adapter.send(request, *args, **kwargs)

    def close(self) -> None:
        with self._lock:
            if self._adapter is not None:
                self._adapter.close()


def _same(context: ssl.SSLContext) -> ssl.SSLContext:
    return context


def api_host(registry: str) -> str:
    """Docker Hub's API is not served at its reference name."""
    return "registry-1.docker.io" if registry in ("docker.io", "index.docker.io") else registry


class Transport:
    """Sends requests to one registry; see the module docstring for what it guarantees."""

    def __init__(
        self,
        access: RegistryAccess,
        registry: str,
        *,
        retry: RetryPolicy,
        timeouts: Timeouts,
    ) -> None:
        """A transport to `registry`, reached as `access` says (its credentials, its trust, its
        scheme; every other host it meets gets its own from `access` too)."""
        own = access.host(registry)
        endpoint = Endpoint.choose(own)
        self.endpoint = endpoint
        self.registry = endpoint.registry
        self.retry = retry
        self.timeouts = timeouts
        self._host = urlsplit(endpoint.base_url).netloc.lower()
        self.session = requests.Session()
        # No ~/.netrc (it would add credentials behind our back), but keep proxy variables;
        # the CA variables are part of the system's trust (access.trust).
        self.session.trust_env = False
        self.session.proxies = dict(requests.utils.get_environ_proxies(endpoint.base_url))
        # Every HTTPS host (redirects, token services) gets the system's trust, and the hosts
        # with a CA bundle of their own get theirs: the longest mounted prefix wins.
        self.session.mount("https://", LazyTrust(lambda: trust(None)))
        for host, context in access.trusted_hosts().items():
            self.session.mount(
                f"https://{api_host(host)}/", LazyTrust(functools.partial(_same, context))
            )
        self.session.headers["User-Agent"] = USER_AGENT
        install_log_redaction()  # urllib3's own DEBUG lines show URLs: keep signatures out
        self.auth = Authenticator(
            endpoint.registry,
            load_credentials=own.find_credentials,
            fetch_token=self._fetch_token,
            allow_plain_realm=endpoint.scheme == "http",
            login_hint=own.login_hint(),
        )

    def __repr__(self) -> str:
        return f"Transport({self.endpoint.base_url!r})"

    def close(self) -> None:
        self.session.close()

    def url(self, path: str) -> str:
        """An absolute URL for a `/v2/...` path or a (relative or absolute) Location header."""
        return urljoin(self.endpoint.base_url + "/", path)

    def request(
        self,
        method: str,
        url: str,
        *,
        scope: str,
        action: str,
        repository: str | None = None,
        headers: Mapping[str, str] | None = None,
        params: Sequence[tuple[str, str]] | None = None,
        data: Body = None,
        stream: bool = False,
        read_limit: int | None = None,
        anonymous: bool = False,
    ) -> requests.Response:
        """Send one logical request and return the final response, whatever its status.

        Retries (bounded by the RetryPolicy) only when `data` is bytes or None: a stream cannot
        be sent twice, and its caller (the upload) knows how to resume instead. Raises
        RegistryError for TLS failures, exhausted connection retries and auth dead ends.
        With `read_limit`, a 2xx body is read (at most limit+1 bytes, so the caller can tell
        "too big") inside the retry loop, and is then available as `response.content`.
        With `anonymous`, no Authorization is ever sent and a 401 is returned as it is (what a
        client without registry auth, such as Lima's downloader, gets).
        """
        if read_limit is not None:
            stream = True
        replayable = data is None or isinstance(data, bytes)
        budget = self.retry.start()
        while True:
            try:
                if anonymous:
                    response = self._send(method, url, headers, params, data, stream, None)
                else:
                    response = self._send_authenticated(
                        method, url, scope, headers, params, data, stream, replayable
                    )
                if read_limit is not None and 200 <= response.status_code < 300:
                    _read_bounded(response, read_limit)
            except requests.exceptions.SSLError:
                raise self._tls_error(repository, action) from None
            except NETWORK_ERRORS as exc:
                reason = describe_exception(exc)
                wait = budget.next_wait() if replayable else None
                if wait is None:
                    tries = f" after {budget.attempts} attempts" if budget.attempts > 1 else ""
                    raise ConnectionFailed(
                        f"{where(self.registry, repository)}: {action} failed{tries}: {reason}",
                        reason=reason,
                    ) from None
                log.info(
                    "registry %s: %s: %s; retrying in %.1f s", self.registry, action, reason, wait
                )
                budget.wait(wait)
                continue
            if response.status_code in RETRYABLE_STATUSES and replayable:
                retry_after = parse_retry_after(response.headers.get("Retry-After"))
                wait = budget.next_wait(retry_after)
                if wait is not None:
                    log.info(
                        "registry %s: %s: HTTP %d; retrying in %.1f s",
                        self.registry,
                        action,
                        response.status_code,
                        wait,
                    )
                    response.close()
                    budget.wait(wait)
                    continue
            return response

    def _send_authenticated(
        self,
        method: str,
        url: str,
        scope: str,
        headers: Mapping[str, str] | None,
        params: Sequence[tuple[str, str]] | None,
        data: Body,
        stream: bool,
        replayable: bool,
    ) -> requests.Response:
        """Send; on 401 renew credentials once and resend (if the body allows), else give up."""
        own_host = urlsplit(url).netloc.lower() == self._host
        sent = self.auth.header(scope) if own_host else None
        response = self._send(method, url, headers, params, data, stream, sent)
        if response.status_code != 401 or not own_host:
            return response
        self.auth.renew(response, scope, sent)
        if not replayable:
            return response  # credentials are fresh now; the caller resumes with a new request
        response.close()
        renewed = self.auth.header(scope)
        retried = self._send(method, url, headers, params, data, stream, renewed)
        if retried.status_code == 401:
            retried.close()
            if renewed is not None and renewed.startswith("Basic "):
                raise self.auth.failure(scope, "401 Unauthorized: credentials rejected")
            raise self.auth.failure(scope, "401 Unauthorized even with a fresh token")
        return retried

    def _send(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str] | None,
        params: Sequence[tuple[str, str]] | None,
        data: Body,
        stream: bool,
        authorization: str | None,
    ) -> requests.Response:
        merged = dict(headers or {})
        if authorization is not None:
            merged["Authorization"] = authorization
        response = self.session.request(
            method,
            url,
            headers=merged,
            params=list(params or []),
            data=data,
            stream=stream,
            timeout=self.timeouts.as_requests(),
            allow_redirects=method in ("GET", "HEAD"),
        )
        log.debug(
            "%s %s %s -> %d",
            method,
            redact_url(url),
            redact_headers(merged),
            response.status_code,
        )
        return response

    def _fetch_token(
        self, realm: str, params: list[tuple[str, str]], headers: dict[str, str]
    ) -> requests.Response:
        """The token request, with the same timeouts/TLS/retries (never the registry's auth)."""
        budget = self.retry.start()
        while True:
            try:
                response = self.session.get(
                    realm, params=params, headers=headers, timeout=self.timeouts.as_requests()
                )
            except requests.exceptions.SSLError:
                raise self._tls_error(None, f"token request to {redact_url(realm)}") from None
            except NETWORK_ERRORS as exc:
                wait = budget.next_wait()
                if wait is None:
                    reason = describe_exception(exc)
                    raise ConnectionFailed(
                        f"{where(self.registry)}: token request to {redact_url(realm)} "
                        f"failed: {reason}",
                        reason=reason,
                    ) from None
                budget.wait(wait)
                continue
            log.debug("GET %s -> %d", redact_url(realm), response.status_code)
            if response.status_code in RETRYABLE_STATUSES:
                wait = budget.next_wait(parse_retry_after(response.headers.get("Retry-After")))
                if wait is not None:
                    budget.wait(wait)
                    continue
            return response

    def _tls_error(self, repository: str | None, action: str) -> RegistryError:
        return RegistryError(
            f"{where(self.registry, repository)}: {action} failed: "
            "TLS certificate verification failed",
            hint="pass the target registry's CA certificate with --ca-bundle; another host's "
            "goes into the system's trust (or $SSL_CERT_FILE)",
        )


def _read_bounded(response: requests.Response, limit: int) -> None:
    """Read at most limit+1 bytes of a streamed body into `response.content`, then close."""
    with response:
        body = bytearray()
        for block in response.iter_content(65536):
            body += block
            if len(body) > limit:
                break
    response._content = bytes(body)  # requests' own cache of a consumed body


def describe_exception(exc: BaseException) -> str:
    """A short, secret-free reason: exception texts can embed URLs, so they are not quoted."""
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return "timed out connecting"
    if isinstance(exc, requests.exceptions.ReadTimeout):
        return "timed out waiting for the response"
    if isinstance(exc, requests.exceptions.ChunkedEncodingError):
        return "connection broken while reading the response"
    text = str(exc).lower()
    if "reset" in text:
        return "connection reset"
    if "refused" in text:
        return "connection refused"
    if "aborted" in text or "broken pipe" in text:
        return "connection aborted"
    if "name or service not known" in text or "nodename nor servname" in text:
        return "host name not found"
    return f"connection failed ({type(exc).__name__})"
