"""Registry authentication: anonymous, HTTP basic, and the bearer-token flow.

The flow (docker "token authentication" spec, used by every public registry): a request answered
401 carries `WWW-Authenticate: Bearer realm=...,service=...,scope=...`; the client GETs the realm
(with basic credentials if it has any) for a token covering that scope, caches it per scope and
repeats the request. A registry protected by plain htpasswd answers `Basic realm=...` instead.

oras-py's TokenAuth implements the same flow but keeps a single token for all scopes (a push to
two repositories would thrash it), sends its token request without timeouts, outside any retry
policy, and parses the header with a regex that drops unquoted values. So the flow is written here,
on top of the transport's one HTTP chokepoint, and the credentials lookup lives in credentials.py.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import requests

from pipeline.core.reference import is_loopback_registry
from pipeline.registry.credentials import ENV_PASSWORD, ENV_USERNAME, Credentials
from pipeline.registry.errors import RegistryError, describe_response, where
from pipeline.registry.redact import one_line, redact_url

log = logging.getLogger(__name__)

# A token is dropped this many seconds before it expires, so it does not expire in flight.
_EXPIRY_SLACK_SECONDS = 30.0
_DEFAULT_TOKEN_LIFETIME = 60.0  # the token spec's default when `expires_in` is absent
_PARAM_RE = re.compile(r'\s*([A-Za-z][A-Za-z0-9_-]*)\s*=\s*("(?:[^"\\]|\\.)*"|[^,\s]*)\s*,?')


@dataclass(frozen=True)
class Challenge:
    """One parsed WWW-Authenticate challenge (scheme lowercased)."""

    scheme: str
    params: dict[str, str] = field(default_factory=dict)


def parse_challenge(header: str) -> Challenge | None:
    """Parse the first challenge of a WWW-Authenticate header; None if it is not one."""
    scheme, _, rest = header.strip().partition(" ")
    if not scheme or not re.fullmatch(r"[A-Za-z][A-Za-z0-9_-]*", scheme):
        return None
    params: dict[str, str] = {}
    pos = 0
    while pos < len(rest):
        match = _PARAM_RE.match(rest, pos)
        if not match or match.end() == pos:
            break  # a second challenge or garbage: the first one is what we use
        key, value = match.group(1).lower(), match.group(2)
        if value.startswith('"'):
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        params[key] = value
        pos = match.end()
    return Challenge(scheme.lower(), params)


def _scope_key(scope: str) -> tuple[str, frozenset[str]]:
    """A scope as (resource, actions): docker-registry's challenges list the actions in random
    order (`push,pull` for our `pull,push`), which is the same scope, not a second one."""
    resource, _, actions = scope.rpartition(":")
    if not resource:
        return scope, frozenset()
    return resource, frozenset(actions.split(","))


@dataclass
class _Token:
    value: str = field(repr=False)
    expires_at: float


# (realm URL, query params, headers) -> response; the transport supplies it so the token request
# gets the same timeouts, TLS settings and retries as every other request.
TokenFetcher = Callable[[str, list[tuple[str, str]], dict[str, str]], requests.Response]


class Authenticator:
    """Chooses the Authorization header for each request, and learns from 401 challenges.

    Thread-safe: the publish code may push several blobs in parallel through one client.
    """

    def __init__(
        self,
        registry: str,
        *,
        load_credentials: Callable[[], Credentials | None],
        fetch_token: TokenFetcher,
        allow_plain_realm: bool = False,
        login_hint: str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._registry = registry
        self._login_hint = login_hint or (
            f"log in (docker config.json, --registry-config) or set {ENV_USERNAME}/{ENV_PASSWORD}"
        )
        self._load_credentials = load_credentials
        self._fetch_token = fetch_token
        self._allow_plain_realm = allow_plain_realm
        self._clock = clock
        self._lock = threading.Lock()
        self._credentials: Credentials | None = None
        self._credentials_loaded = False
        self._basic = False  # the registry asked for Basic: send it up front from now on
        self._tokens: dict[str, _Token] = {}

    def __repr__(self) -> str:
        return (
            f"Authenticator(registry={self._registry!r}, basic={self._basic}, "
            f"token_scopes={sorted(self._tokens)!r})"
        )

    def credentials(self) -> Credentials | None:
        """Looked up once, lazily: an anonymous registry never runs a credential helper."""
        with self._lock:
            if not self._credentials_loaded:
                self._credentials = self._load_credentials()
                self._credentials_loaded = True
            return self._credentials

    def header(self, scope: str) -> str | None:
        """The Authorization value to send for `scope`, or None (anonymous)."""
        with self._lock:
            token = self._tokens.get(scope)
            if token is not None:
                if token.expires_at > self._clock():
                    return f"Bearer {token.value}"
                del self._tokens[scope]
            basic = self._basic
        if basic:
            creds = self.credentials()
            return creds.basic_header() if creds else None
        return None

    def renew(self, response: requests.Response, scope: str, sent: str | None) -> None:
        """React to a 401 for `scope` (the request carried `sent`) so a retry can succeed.

        Raises RegistryError when no retry can: no usable challenge, no credentials for Basic,
        or the token service refusing.
        """
        challenge = parse_challenge(response.headers.get("WWW-Authenticate", ""))
        if challenge is None:
            raise self.failure(scope, "401 without a WWW-Authenticate challenge")
        if challenge.scheme == "basic":
            creds = self.credentials()
            if creds is None:
                raise self.failure(scope, "401 Unauthorized and no credentials found")
            if sent is not None and sent.startswith("Basic "):
                raise self.failure(scope, "401 Unauthorized: credentials rejected")
            with self._lock:
                self._basic = True
            return
        if challenge.scheme == "bearer":
            with self._lock:
                self._tokens.pop(scope, None)
            self._fetch_and_cache(challenge, scope)
            return
        raise self.failure(scope, f"unsupported authentication scheme {challenge.scheme!r}")

    def _fetch_and_cache(self, challenge: Challenge, scope: str) -> None:
        realm = challenge.params.get("realm")
        if not realm:
            raise self.failure(scope, "bearer challenge without a realm")
        creds = self.credentials()
        if creds is not None and not self._realm_may_see_credentials(realm):
            raise self.failure(  # this client's refusal, not the registry's answer
                scope,
                f"refusing to send credentials to plain-HTTP token realm {redact_url(realm)}",
                status=None,
                hint="credentials go only to an HTTPS (or loopback) token service, unless the "
                "registry itself is plain HTTP",
            )
        params: list[tuple[str, str]] = []
        if "service" in challenge.params:
            params.append(("service", challenge.params["service"]))
        scopes = scope.split()
        challenged = challenge.params.get("scope")
        if challenged:
            known = {_scope_key(s) for s in scopes}
            scopes += [s for s in dict.fromkeys(challenged.split()) if _scope_key(s) not in known]
        params += [("scope", s) for s in scopes]
        headers = {"Accept": "application/json"}
        if creds is not None:
            headers["Authorization"] = creds.basic_header()
        reply = self._fetch_token(realm, params, headers)
        if reply.status_code != 200:
            refused = reply.status_code in (401, 403)
            what = "credentials rejected by" if refused else "error from"
            raise self.failure(
                scope,
                f"{what} token service {redact_url(realm)} ({describe_response(reply)})",
                status=reply.status_code,
                hint=None if refused else "the token service failed; try again later",
            )
        try:
            body = reply.json()
            value = body.get("token") or body.get("access_token")
            lifetime = float(body.get("expires_in") or _DEFAULT_TOKEN_LIFETIME)
        except (ValueError, AttributeError, TypeError):
            value, lifetime = None, 0.0
        if not isinstance(value, str) or not value:
            raise self.failure(scope, f"token service {redact_url(realm)} returned no token")
        expires = self._clock() + max(0.0, lifetime - _EXPIRY_SLACK_SECONDS)
        with self._lock:
            self._tokens[scope] = _Token(value, expires)
        log.debug("registry %s: got a token for scope %s", self._registry, scope)

    def _realm_may_see_credentials(self, realm: str) -> bool:
        parts = urlsplit(realm)
        if parts.scheme == "https" or self._allow_plain_realm:
            return True
        return is_loopback_registry(parts.netloc.rpartition("@")[2])

    def origin(self) -> tuple[str, str]:
        """Where the credentials in use came from, and what to do if they are not enough."""
        creds = self._credentials
        if creds is not None:
            origin = f"credentials from {creds.source}" if creds.source else "credentials given"
            return origin, f"check the {origin}"
        return "no credentials", self._login_hint

    def failure(
        self, scope: str, what: str, *, status: int | None = 401, hint: str | None = None
    ) -> RegistryError:
        """The one-line error for an authentication dead end, saying where credentials came from.

        `status` is the answer that ended it (the registry's 401, or the token service's own
        status: a 5xx there is no refusal of access); None when this client refused.
        """
        origin, credentials_hint = self.origin()
        reason = f"{one_line(what)} ({origin})"
        return RegistryError(
            f"{where(self._registry)}: authentication failed for scope {scope}: {reason}",
            status=status,
            hint=hint or credentials_hint,
            reason=reason,
        )
