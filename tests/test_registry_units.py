"""The transport's pure parts: challenges, Retry-After, backoff, redaction, credential lookup."""

from __future__ import annotations

import base64
import email.utils
import hashlib
import logging
import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.core.errors import UsageError
from pipeline.registry import RegistryClient, RetryPolicy
from pipeline.registry.access import RegistryAccess
from pipeline.registry.auth import Challenge, _scope_key, parse_challenge
from pipeline.registry.credentials import Credentials, credentials_from_config, find_credentials
from pipeline.registry.redact import (
    REDACTED,
    QueryRedactingFilter,
    one_line,
    redact_headers,
    redact_queries,
    redact_url,
)
from pipeline.registry.retry import parse_retry_after
from pipeline.registry.uploads import (
    ChunkSizing,
    acknowledged,
    chunk_size_for,
    parse_range_end,
    reconcile,
    stated_limit,
    with_digest,
)
from tests.support.registry import RunningRegistry

PACKAGE = Path(__file__).resolve().parent.parent / "pipeline" / "registry"


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (
            'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
            'scope="repository:library/ubuntu:pull,push"',
            Challenge(
                "bearer",
                {
                    "realm": "https://auth.docker.io/token",
                    "service": "registry.docker.io",
                    "scope": "repository:library/ubuntu:pull,push",
                },
            ),
        ),
        ('Basic realm="test-realm"', Challenge("basic", {"realm": "test-realm"})),
        (
            "Bearer realm=https://a/t, service=svc",
            Challenge("bearer", {"realm": "https://a/t", "service": "svc"}),
        ),
        ('bearer realm="a\\"b"', Challenge("bearer", {"realm": 'a"b'})),
        (
            'Bearer realm="r",error="insufficient_scope"',
            Challenge("bearer", {"realm": "r", "error": "insufficient_scope"}),
        ),
        ("", None),
        ("=broken", None),
    ],
)  # fmt: skip
def test_parse_challenge(header: str, expected: Challenge | None) -> None:
    assert parse_challenge(header) == expected


def test_parse_retry_after() -> None:
    now = 1_700_000_000.0
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(email.utils.formatdate(now + 30, usegmt=True), now=now) == 30.0
    assert parse_retry_after(email.utils.formatdate(now - 30, usegmt=True), now=now) == 0.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


def test_backoff_grows_and_is_capped_and_bounded() -> None:
    clock = [0.0]
    policy = RetryPolicy(
        max_attempts=6, base_delay=1.0, max_delay=5.0, total_seconds=100.0,
        rng=lambda: 1.0, clock=lambda: clock[0], sleep=lambda s: None,
    )  # fmt: skip
    budget = policy.start()
    waits = [budget.next_wait() for _ in range(6)]
    assert waits == [1.0, 2.0, 4.0, 5.0, 5.0, None]


def test_budget_bounds_total_time() -> None:
    clock = [0.0]
    policy = RetryPolicy(max_attempts=100, total_seconds=10.0, clock=lambda: clock[0])
    budget = policy.start()
    assert budget.next_wait(retry_after=4.0) == 4.0
    clock[0] = 8.0
    assert budget.next_wait(retry_after=4.0) == 2.0  # capped by what is left
    clock[0] = 10.0
    assert budget.next_wait(retry_after=1.0) is None


def test_jitter_stays_within_the_exponential_ceiling() -> None:
    policy = RetryPolicy(base_delay=0.5, max_delay=8.0)
    for attempt in range(1, 10):
        for _ in range(20):
            assert 0.0 <= policy.backoff(attempt) <= min(8.0, 0.5 * 2 ** (attempt - 1))


def test_with_digest_keeps_the_upload_state() -> None:
    location = "http://h:5000/v2/a/blobs/uploads/uuid?_state=abc%2Bdef%3D%3D"
    assert with_digest(location, "sha256:00") == location + "&digest=sha256%3A00"
    assert (
        with_digest("/v2/a/blobs/uploads/u", "sha256:00")
        == "/v2/a/blobs/uploads/u?digest=sha256%3A00"
    )


@pytest.mark.parametrize(
    ("value", "end"), [("0-99", 99), ("0--1", -1), ("bytes=0-5", 5), ("5-9", None), (None, None)]
)
def test_parse_range_end(value: str | None, end: int | None) -> None:
    assert parse_range_end(value) == end


@pytest.mark.parametrize(
    ("range_end", "acked", "sent_end", "offset"),
    [
        (0, 0, 4096, 0),  # docker-registry 2.8: `0-0` after a lost PATCH at byte 0 is nothing
        (-1, 0, 4096, 0),  # `0--1`: nothing, as other registries say it
        (0, 1, 4097, 1),  # `0-0` once one byte was acknowledged is that byte
        (4095, 4096, 8192, 4096),  # the lost chunk never arrived
        (8191, 4096, 8192, 8192),  # the lost chunk arrived whole (only its answer was lost)
        (5000, 4096, 8192, 5001),  # part of it arrived (a streaming proxy)
        (4095, 8192, 12288, 8192),  # stale (ECR): the acknowledged offset stands
        (None, 4096, 8192, 4096),  # no Range: what was acknowledged
        (9000, 4096, 8192, 9001),  # more than sent: the caller refuses it
    ],
)
def test_reconcile_range_with_what_was_acknowledged(
    range_end: int | None, acked: int, sent_end: int, offset: int
) -> None:
    assert reconcile(range_end, acked, sent_end) == offset


@given(st.integers(0, 10**9), st.integers(0, 10**7), st.integers(-1, 2 * 10**9))
def test_reconcile_never_skips_an_unacknowledged_byte(acked: int, chunk: int, end: int) -> None:
    """Whatever the registry says, the upload goes on within [acked, sent] or is refused."""
    offset = reconcile(end, acked, acked + chunk)
    assert offset >= acked
    assert offset <= acked + chunk or offset == end + 1


@pytest.mark.parametrize(
    ("range_end", "before", "end", "held"),
    [
        (8191, 4096, 8192, 8192),  # as the spec says
        (4095, 8192, 12288, 12288),  # ECR's Range stuck at the first chunk: the 2xx stands
        (0, 0, 4096, 4096),  # `0-0` after a first chunk: it did not advance, the 2xx stands
        (6000, 4096, 8192, 6001),  # part of the chunk taken: go on from there
        (None, 4096, 8192, 8192),
    ],
)
def test_acknowledged_chunk(range_end: int | None, before: int, end: int, held: int) -> None:
    assert acknowledged(range_end, before, end) == held


def test_chunk_size_per_registry() -> None:
    """ghcr.io caps request bodies at 4 MiB (wasmCloud/wash#268, ocx-sh/ocx#237)."""
    assert chunk_size_for("ghcr.io", 16 << 20) == 4 << 20
    assert chunk_size_for("GHCR.io:443", 1 << 20) == 1 << 20
    assert chunk_size_for("quay.io", 16 << 20) == 16 << 20


def test_chunk_sizing_adapts_to_refusals() -> None:
    ghcr = "416 REQUESTED_RANGE_NOT_SATISFIABLE: the request body is too large and exceeds the "
    ghcr += "maximum permissible limit of 4.00MiB"
    assert stated_limit(ghcr) == 4 << 20
    sizing = ChunkSizing(16 << 20)
    sizing.refused(16 << 20, ghcr)
    assert sizing.size == 4 << 20
    sizing = ChunkSizing(16 << 20)
    sizing.refused(16 << 20, "416 Requested Range Not Satisfiable")  # no reason given: halve
    assert sizing.size == 8 << 20
    sizing = ChunkSizing(256 << 10)
    sizing.learn({"OCI-Chunk-Min-Length": str(1 << 20)})
    assert (sizing.size, sizing.minimum) == (1 << 20, 1 << 20)
    sizing = ChunkSizing(256 << 10, minimum=1 << 20)
    sizing.refused(256 << 10, "416")
    assert sizing.size == 1 << 20


def test_redaction() -> None:
    assert (
        redact_url("https://user:pw@host:5000/v2/?x=1") == f"https://{REDACTED}@host:5000/v2/?x=1"
    )
    assert redact_url("https://host/v2/") == "https://host/v2/"
    assert redact_headers({"Authorization": "Bearer t", "Accept": "x"}) == {
        "Authorization": REDACTED,
        "Accept": "x",
    }
    assert one_line("a\n  b\tc") == "a b c"
    assert len(one_line("x" * 1000)) == 300


@given(
    st.from_regex(r"[A-Za-z0-9]{1,10}", fullmatch=True),
    st.from_regex(r"[A-Za-z0-9._~%!$&'()*+,;=-]{6,20}", fullmatch=True),
)
def test_redacted_urls_never_contain_the_password(user: str, password: str) -> None:
    redacted = redact_url(f"https://{user}:{password}@registry.example:443/v2/token")
    assert password not in redacted and redacted.endswith("@registry.example:443/v2/token")


def test_redaction_of_presigned_urls() -> None:
    signed = (
        "https://bucket.s3.amazonaws.com/docker/blobs/data?X-Amz-Algorithm=AWS4-HMAC-SHA256"
        "&X-Amz-Credential=AKIAEXAMPLE%2F20260101%2Fus-east-1%2Fs3%2Faws4_request"
        "&X-Amz-Date=20260101T000000Z&X-Amz-Expires=1200&X-Amz-Signature=deadbeef01"
        "&Signature=cf-secret&sig=azure-secret&X-Amz-Security-Token=session-secret"
    )
    redacted = redact_url(signed)
    for secret in ("AKIAEXAMPLE", "deadbeef01", "cf-secret", "azure-secret", "session-secret"):
        assert secret not in redacted
    assert "X-Amz-Expires=1200" in redacted and f"X-Amz-Signature={REDACTED}" in redacted
    upload = "http://h/v2/r/blobs/uploads/u?_state=abc&digest=sha256%3A12"
    assert redact_url(upload) == upload  # nothing secret: left byte for byte
    line = 'http://h:80 "GET /v2/r/blobs/sha256:ab?X-Amz-Signature=s3cr3t&a=b HTTP/1.1" 200 5'
    assert (
        redact_queries(line) == f'http://h:80 "GET /v2/r/blobs/sha256:ab?{REDACTED} HTTP/1.1" 200 5'
    )


def test_library_log_records_lose_their_query_strings() -> None:
    RegistryClient("r.example")  # a transport installs the filter
    logger = logging.getLogger("urllib3.connectionpool")
    (redacting,) = [f for f in logger.filters if isinstance(f, QueryRedactingFilter)]
    record = logger.makeRecord(
        logger.name, logging.DEBUG, __file__, 1, '%s "%s %s" %s',
        ("http://h:80", "GET", "/v2/x?sig=s3cr3t", 200), None,
    )  # fmt: skip
    assert redacting.filter(record)  # rewritten, never dropped
    assert record.getMessage() == f'http://h:80 "GET /v2/x?{REDACTED}" 200'


def test_challenge_scope_in_another_action_order_is_the_same_scope() -> None:
    assert _scope_key("repository:a/b:push,pull") == _scope_key("repository:a/b:pull,push")
    assert _scope_key("repository:a/b:pull") != _scope_key("repository:a/b:pull,push")


def test_credentials_repr_hides_the_password() -> None:
    creds = Credentials("me", "hunter2-secret", "somewhere")
    assert "hunter2-secret" not in repr(creds)
    assert "hunter2-secret" not in repr(RegistryClient("r.example", credentials=creds))


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


@pytest.mark.parametrize(
    ("registry", "auths", "user"),
    [
        ("r.example", {"r.example": {"auth": b64("u1:p:w")}}, "u1"),
        ("r.example:5000", {"https://r.example:5000/v1/": {"auth": b64("u2:p")}}, "u2"),
        ("localhost:5000", {"127.0.0.1:5000": {"username": "u3", "password": "p"}}, "u3"),
        ("docker.io", {"https://index.docker.io/v1/": {"auth": b64("u4:p")}}, "u4"),
        ("r.example", {"other.example": {"auth": b64("u5:p")}}, None),
        ("r.example", {"r.example": {}}, None),
    ],
)
def test_credentials_from_config(registry: str, auths: dict[str, object], user: str | None) -> None:
    found = credentials_from_config(registry, {"auths": auths}, "cfg")
    assert (found.username if found else None) == user
    if registry == "r.example" and user == "u1":
        assert found is not None and found.password == "p:w"


def test_bad_auth_entry_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="not base64"):
        credentials_from_config("r.example", {"auths": {"r.example": {"auth": "%%%"}}}, "cfg")


ENV = {"BOOTC_PIPELINE_REGISTRY_USERNAME": "ci", "BOOTC_PIPELINE_REGISTRY_PASSWORD": "tok"}


def test_environment_credentials_are_the_environment_hosts_alone(tmp_path: Path) -> None:
    """$BOOTC_PIPELINE_REGISTRY_* are one host's (the target's); every other host gets only its
    own docker config entry, or nothing (issue 14: the CI token went to quay.io's token
    service)."""
    auth = base64.b64encode(b"quay-user:quay-pw").decode()
    (tmp_path / "config.json").write_text(f'{{"auths": {{"quay.io": {{"auth": "{auth}"}}}}}}')
    env = ENV | {"DOCKER_CONFIG": str(tmp_path)}
    access = RegistryAccess(target="ghcr.io", environment_host="ghcr.io")
    found = access.host("ghcr.io").find_credentials(env)
    assert found is not None and (found.username, found.password) == ("ci", "tok")
    base = access.host("quay.io").find_credentials(env)  # the base's registry: its own
    assert base is not None and (base.username, base.password) == ("quay-user", "quay-pw")
    assert access.host("registry.example").find_credentials(env) is None
    assert find_credentials("ghcr.io", environ=env) is None  # the docker config's only
    reading = RegistryAccess(target="ghcr.io", environment_host=None)  # pull without --registry
    assert reading.host("ghcr.io").find_credentials(env) is None
    with pytest.raises(UsageError, match="set both"):
        access.host("ghcr.io").find_credentials({"BOOTC_PIPELINE_REGISTRY_USERNAME": "ci"})


def test_access_profiles_per_host(tmp_path: Path) -> None:
    """The target gets --ca-bundle, --plain-http and --force-plain-http; another host gets the
    system's trust alone, and plain HTTP only if it is loopback as well."""
    ca = tmp_path / "ca.pem"
    access = RegistryAccess(
        target="localhost:5000",
        environment_host="localhost:5000",
        plain_http=True,
        force_plain_http=True,
        ca_bundle=ca,
        credentials=Credentials("u", "p"),
    )
    target = access.host("127.0.0.1:5000")  # localhost is 127.0.0.1
    assert (target.plain_http, target.force_plain_http, target.ca_bundle) == (True, True, ca)
    assert target.environment_credentials and target.credentials == Credentials("u", "p")
    source = access.host("127.0.0.1:5001")
    assert (source.plain_http, source.force_plain_http, source.ca_bundle) == (True, False, None)
    assert not source.environment_credentials and source.credentials is None
    public = access.host("quay.io")
    assert (public.plain_http, public.ca_bundle) == (False, None)
    assert RegistryAccess(target="quay.io", environment_host=None).trusted_hosts() == {}


def test_the_commands_make_registry_clients_in_one_place() -> None:
    """Every client the commands make takes its hosts' access from Options.access (one place,
    registry/access.py): no other module of the product constructs a RegistryClient."""
    root = PACKAGE.parent
    makers = sorted(
        path.relative_to(root).as_posix()
        for path in root.rglob("*.py")
        if re.search(r"\bRegistryClient\(\s*\w", path.read_text())
    )
    assert makers == ["shared/context.py"]


def test_only_the_transport_opens_connections() -> None:
    """The chokepoint: no other registry module calls requests or a session directly."""
    verbs = r"(get|post|put|patch|head|delete|request|send)"
    pattern = re.compile(rf"requests\.({verbs}|Session)\(|\bsession\.{verbs}\(")
    offenders = [
        path.name
        for path in PACKAGE.glob("*.py")
        if path.name != "transport.py" and pattern.search(path.read_text())
    ]
    assert offenders == []


@pytest.mark.integration
def test_every_request_carries_connect_and_read_timeouts(
    registry: RunningRegistry, repository_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = RegistryClient(registry.host, plain_http=True, chunk_size=1024)
    seen: list[object] = []
    real = client._t.session.request

    def recording(*args: object, **kwargs: object) -> object:
        seen.append(kwargs.get("timeout"))
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(client._t.session, "request", recording)
    data = b"t" * 5000
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    client.push_blob(repository_name, data, digest, len(data))
    client.fetch_blob(repository_name, digest)
    client.list_tags(repository_name)
    assert len(seen) >= 9 and all(t == (10.0, 120.0) for t in seen)
