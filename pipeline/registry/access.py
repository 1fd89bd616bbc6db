"""Registry access profiles: for each host, its credentials, its trust, and plain HTTP or not.

The one place that decides how a host is reached. Every connection a registry client opens gets
its settings from here: the registry it was made for (a publish's target, a base's or builder's
registry read by the inputs stage, a release being pulled), that registry's token service and
the blob storage a download is redirected to.

- Credentials. The environment's ($BOOTC_PIPELINE_REGISTRY_USERNAME/_PASSWORD, a CI token) belong
  to one host, `environment_host`: a publish's target registry, or for the commands that read
  (pull, lima, validate, boot REF) the registry named with `--registry`. Every other host gets
  only what the docker config stores for it (an `auths` entry, `credHelpers`, `credsStore`), or
  nothing. A registry's credentials go to its own token service (the token flow needs them
  there) and never to another host: the transport sends Authorization only to the client's own
  host, and requests drops it on a redirect to another host.
- Trust. Every host is verified against the system's trust: OpenSSL's default store, which
  honours $SSL_CERT_FILE and $SSL_CERT_DIR, plus $REQUESTS_CA_BUNDLE / $CURL_CA_BUNDLE when set.
  `--ca-bundle` adds its certificates to that trust, for the command's own registry (`target`)
  only: a private CA for the target neither replaces the trust of a public base nor applies to
  a source or a token service on another host.
- Plain HTTP: `--plain-http` is for `target` (to loopback, or anywhere with
  `--force-plain-http`); another host gets plain HTTP only when it is loopback too.
"""

from __future__ import annotations

import functools
import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import certifi

from pipeline.core.errors import UsageError
from pipeline.core.reference import is_loopback_registry
from pipeline.registry.credentials import (
    Credentials,
    credentials_from_environment,
    find_credentials,
)

# requests' own variables for a CA bundle: honoured (added), as SSL_CERT_FILE is by OpenSSL.
CA_BUNDLE_VARIABLES = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")
# OpenSSL reads these itself (X509_get_default_cert_file_env): part of the cache key.
_OPENSSL_VARIABLES = ("SSL_CERT_FILE", "SSL_CERT_DIR")


def same_registry(a: str, b: str) -> bool:
    """host[:port] names of one registry (case-insensitive; localhost is 127.0.0.1)."""

    def norm(name: str) -> str:
        name = name.lower()
        return "127.0.0.1" + name[len("localhost") :] if name.startswith("localhost") else name

    return norm(a) == norm(b)


@dataclass(frozen=True)
class HostAccess:
    """How one registry host is reached; made by `RegistryAccess.host`."""

    registry: str
    plain_http: bool
    force_plain_http: bool
    ca_bundle: Path | None  # added to the system's trust for this host
    environment_credentials: bool  # $BOOTC_PIPELINE_REGISTRY_* are for this host
    registry_config: Path | None
    credentials: Credentials | None = field(default=None, repr=False)  # given by the caller

    def find_credentials(self, environ: Mapping[str, str] | None = None) -> Credentials | None:
        """This host's credentials: the caller's, the environment's (only if they are this
        host's), else its docker config entry or credential helper; None for anonymous."""
        if self.credentials is not None:
            return self.credentials
        if self.environment_credentials:
            found = credentials_from_environment(environ)
            if found is not None:
                return found
        return find_credentials(
            self.registry, registry_config=self.registry_config, environ=environ
        )

    def login_hint(self) -> str | None:
        """What to do when this host wants credentials it has none of (None: the default)."""
        if self.environment_credentials:
            return None
        return (
            f"log in to {self.registry} (an `auths` entry or a credential helper in the docker "
            "config, or --registry-config); the environment's credentials are only for the "
            "target registry (--registry)"
        )

    def ssl_context(self) -> ssl.SSLContext:
        """The system's trust, plus this host's `--ca-bundle`."""
        return trust(self.ca_bundle)


@dataclass(frozen=True)
class RegistryAccess:
    """The user's registry settings, and the rule that turns them into each host's access.

    `target`: the registry the command is about (a publish's target, REF's registry for pull,
    lima, validate and boot REF); `--ca-bundle` and `--plain-http` are for it.
    `environment_host`: the registry the environment's credentials are for (None: no host).
    `credentials`: credentials given in code for `target` (they replace every lookup there).
    """

    target: str
    environment_host: str | None
    plain_http: bool = False
    force_plain_http: bool = False
    ca_bundle: Path | None = None
    registry_config: Path | None = None
    credentials: Credentials | None = field(default=None, repr=False)

    def host(self, registry: str) -> HostAccess:
        """What `registry` gets: see the module docstring."""
        is_target = same_registry(registry, self.target)
        return HostAccess(
            registry=registry,
            plain_http=self.plain_http and (is_target or is_loopback_registry(registry)),
            force_plain_http=self.force_plain_http and is_target,
            ca_bundle=self.ca_bundle if is_target else None,
            environment_credentials=self.environment_host is not None
            and same_registry(registry, self.environment_host),
            registry_config=self.registry_config,
            credentials=self.credentials if is_target else None,
        )

    def trusted_hosts(self) -> dict[str, ssl.SSLContext]:
        """The hosts whose trust is not the system's alone, with their SSL context."""
        if self.ca_bundle is None:
            return {}
        return {self.target: self.host(self.target).ssl_context()}


def trust(ca_bundle: Path | None, environ: Mapping[str, str] | None = None) -> ssl.SSLContext:
    """An SSL context verifying against the system's trust (see the module docstring), plus
    the certificates of `ca_bundle`. Contexts are shared (they are thread-safe to use)."""
    env = os.environ if environ is None else environ
    bundles = tuple((name, env[name]) for name in CA_BUNDLE_VARIABLES if env.get(name))
    openssl = tuple(env.get(name, "") for name in _OPENSSL_VARIABLES)
    if ca_bundle is not None and not ca_bundle.is_file():
        raise UsageError(f"CA bundle {ca_bundle} does not exist")
    return _context(str(ca_bundle) if ca_bundle else None, bundles, openssl)


@functools.lru_cache(maxsize=16)
def _context(
    ca_bundle: str | None, bundles: tuple[tuple[str, str], ...], openssl: tuple[str, ...]
) -> ssl.SSLContext:
    del openssl  # only the cache key: OpenSSL reads SSL_CERT_FILE/SSL_CERT_DIR itself
    context = ssl.create_default_context()  # OpenSSL's default store, $SSL_CERT_FILE/_DIR
    paths = ssl.get_default_verify_paths()
    if paths.cafile is None and paths.capath is None:  # no system store (some Pythons)
        context.load_verify_locations(cafile=certifi.where())
    for name, bundle in bundles:
        _add(context, bundle, f"${name}")
    if ca_bundle is not None:
        _add(context, ca_bundle, "--ca-bundle")
    return context


def _add(context: ssl.SSLContext, bundle: str, what: str) -> None:
    try:
        if Path(bundle).is_dir():
            context.load_verify_locations(capath=bundle)
        else:
            context.load_verify_locations(cafile=bundle)
    except (OSError, ssl.SSLError):
        raise UsageError(f"{what}: {bundle} is not a readable file of PEM certificates") from None
