"""parse_reference: examples, and properties over generated valid and invalid references."""

from __future__ import annotations

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from pipeline.core.errors import UsageError
from pipeline.core.reference import Reference, is_loopback_registry, parse_reference

DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:5000/foo/bar:v1", Reference("127.0.0.1:5000", "foo/bar", "v1", None)),
        ("ghcr.io/org/img", Reference("ghcr.io", "org/img", None, None)),
        ("localhost/x", Reference("localhost", "x", None, None)),
        ("[::1]:5000/a_b/c-d:T.1", Reference("[::1]:5000", "a_b/c-d", "T.1", None)),
        (f"quay.io/a/b@{DIGEST}", Reference("quay.io", "a/b", None, DIGEST)),
        (f"quay.io:443/a/b:t@{DIGEST}", Reference("quay.io:443", "a/b", "t", DIGEST)),
        ("Registry/a", Reference("Registry", "a", None, None)),  # uppercase ⇒ a host
        ("r.io/a__b/c---d.e", Reference("r.io", "a__b/c---d.e", None, None)),
    ],
)
def test_parses(text: str, expected: Reference) -> None:
    ref = parse_reference(text)
    assert ref == expected
    assert str(ref) == text


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("", "empty"),
        (" r.io/a", "whitespace"),
        ("fedora/bootc:40", "no registry host"),
        ("r.io/UPPER", "repository 'UPPER'"),
        ("r.io/a:", "invalid tag ''"),
        ("r.io/a:-x", "invalid tag '-x'"),
        ("r.io/a:" + "t" * 129, "invalid tag"),
        ("r.io/a@sha256:abc", "invalid digest 'sha256:abc'"),
        ("r.io/a@md5:" + "0" * 32, "invalid digest"),
        ("r.io//a", "repository"),
        ("r.io/a/", "repository"),
        ("r.io/a..b", "repository"),
        ("r.io/-a", "repository"),
        ("r.io:99999/a", "invalid port '99999'"),
        ("r.io:/a", "invalid port ''"),
        ("bad_host.io/a", "invalid registry host 'bad_host.io'"),
        ("[zz]:5000/a", "invalid IPv6"),
        ("r.io/a:b/c", "unexpected ':'"),
        ("r.io/" + "a" * 260, "longer than 255"),
    ],
)
def test_rejects_naming_the_bad_part(text: str, names: str) -> None:
    with pytest.raises(UsageError, match=None) as caught:
        parse_reference(text)
    assert names in str(caught.value)


def test_default_registry() -> None:
    assert parse_reference("a/b:c", default_registry="r.io") == Reference("r.io", "a/b", "c", None)
    assert parse_reference("x.io/b", default_registry="r.io").registry == "x.io"


def test_target_and_helpers() -> None:
    ref = parse_reference("r.io/a:v1")
    assert ref.target == "v1" and ref.name == "r.io/a"
    pinned = ref.with_digest(DIGEST)
    assert pinned.target == DIGEST and str(pinned) == f"r.io/a:v1@{DIGEST}"
    assert str(pinned.with_tag("v2")) == "r.io/a:v2"
    with pytest.raises(UsageError, match="neither a tag nor a digest"):
        _ = parse_reference("r.io/a").target
    with pytest.raises(UsageError):
        ref.with_tag("-bad")


@pytest.mark.parametrize(
    ("registry", "loopback"),
    [
        ("127.0.0.1:5000", True),
        ("127.1.2.3", True),
        ("localhost:5000", True),
        ("LOCALHOST", True),
        ("[::1]:5000", True),
        ("128.0.0.1:5000", False),
        ("localhost.example.com", False),
        ("[::2]", False),
        ("registry.local", False),
    ],
)
def test_loopback(registry: str, loopback: bool) -> None:
    assert is_loopback_registry(registry) is loopback


# -- properties -----------------------------------------------------------------------------------

_alnum = st.from_regex(r"[a-z0-9]{1,6}", fullmatch=True)
_separator = st.sampled_from([".", "_", "__", "-", "--"])
_component = st.builds(
    lambda first, rest: first + "".join(sep + part for sep, part in rest),
    _alnum,
    st.lists(st.tuples(_separator, _alnum), max_size=2),
)
_repository = st.lists(_component, min_size=1, max_size=4).map("/".join)
_host = st.one_of(
    st.from_regex(
        r"[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?)+", fullmatch=True
    ),
    st.just("localhost"),
    st.ip_addresses(v=4).map(str),
    st.ip_addresses(v=6).map(lambda a: f"[{a}]"),
)
_port = st.integers(min_value=1, max_value=65535).map(str)
_registry = st.builds(lambda h, p: h if p is None else f"{h}:{p}", _host, st.none() | _port)
_tag = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}", fullmatch=True)
_digest = st.binary(min_size=32, max_size=32).map(lambda b: "sha256:" + b.hex())


@st.composite
def valid_references(draw: st.DrawFn) -> str:
    text = f"{draw(_registry)}/{draw(_repository)}"
    tag = draw(st.none() | _tag)
    digest = draw(st.none() | _digest)
    if tag is not None:
        text += f":{tag}"
    if digest is not None:
        text += f"@{digest}"
    return text


@given(valid_references())
def test_valid_references_round_trip(text: str) -> None:
    ref = parse_reference(text)
    assert str(ref) == text
    assert parse_reference(str(ref)) == ref


_breakages = st.sampled_from(
    [
        lambda t: t.replace("/", "/A", 1),  # uppercase in the repository
        lambda t: t + ":",  # empty tag
        lambda t: t + ":.tag",  # tag starting with '.'
        lambda t: t + "@sha256:1234",  # short digest
        lambda t: t + "/",  # empty path component
        lambda t: t.replace("/", "//", 1),  # empty path component
        lambda t: t.split("/", 1)[1] if "." not in t.split("/", 1)[1] else t + " ",  # no host
        lambda t: t + "-",  # trailing separator
        lambda t: " " + t,
    ]
)


@given(
    st.builds(
        lambda text, breakage: breakage(text),
        valid_references().filter(lambda t: "@" not in t and ":" not in t.split("/", 1)[1]),
        _breakages,
    )
)
def test_broken_references_raise_usage_error(text: str) -> None:
    with pytest.raises(UsageError):
        parse_reference(text)


@given(st.text(max_size=80))
@example("a.io/b:c@sha256:" + "0" * 64)
@example("[::1/a")
@example("@")
def test_arbitrary_text_is_either_usage_error_or_round_trips(text: str) -> None:
    try:
        ref = parse_reference(text)
    except UsageError:
        return
    assert str(ref) == text
