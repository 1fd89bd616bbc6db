"""`limactl-url-oras`, Lima's URL-handler plugin for `oras:REF`, judged by its contract and by
the real limactl v2.2.0 (tests/support/lima.py runs it as an unprivileged user).

Lima's side of the contract (lima-vm/lima v2.2.0 pkg/limatmpl/locator.go, transformCustomURL):
for `oras:REST` it runs `limactl-url-oras REST` (found on PATH: here the venv's bin), takes its
trimmed stdout as the template locator, and on a non-zero exit shows the trimmed stderr. The
instance is named after the template file (InstNameFromYAMLPath).

The release: both architectures published by the real CLI (`push` over a synthetic work
directory, tests/support/workdirs.py) to Debian's docker-registry on 127.0.0.1, which speaks
plain HTTP: BOOTC_PIPELINE_PLAIN_HTTP=1 tells the plugin so.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from pipeline.consume import lima_plugin
from pipeline.core.arch import Arch
from pipeline.core.reference import parse_reference
from tests.support.lima import LimaUser, make_lima_user, plugin, user_plugin_dir
from tests.support.workdirs import PublishedRelease, cli_env, published_release

REPO = "bootc-lima/fedora-bootc-lima"
TAG = "40.1.0"
BLOBS = "/blobs/sha256:"
INDEX = "application/vnd.oci.image.index.v1+json"
TIMEOUT = 120.0


# -- the contract's pure parts -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rest", "want"),
    [
        ("ghcr.io/o/r:1", "ghcr.io/o/r:1"),
        ("//ghcr.io/o/r:1", "ghcr.io/o/r:1"),  # oras://ghcr.io/o/r:1, the seed's spelling
        ("//127.0.0.1:5000/o/r@sha256:" + "a" * 64, "127.0.0.1:5000/o/r@sha256:" + "a" * 64),
    ],
)
def test_locator_spellings(rest: str, want: str) -> None:
    assert lima_plugin.reference_text(rest) == want


def test_instance_name_is_a_lima_identifier_from_the_repository() -> None:
    assert lima_plugin.instance_name(parse_reference("ghcr.io/o/fedora-bootc-lima:40")) == (
        "fedora-bootc-lima"
    )
    assert lima_plugin.instance_name(parse_reference("h.io/o/a__b.c-d:1")) == "a-b.c-d"


def test_each_reference_has_its_own_template(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    a = lima_plugin.template_path(parse_reference("ghcr.io/o/r:1"))
    b = lima_plugin.template_path(parse_reference("quay.io/o/r:1"))
    assert a != b and a.name == b.name == "r.yaml"
    assert a.is_relative_to(tmp_path / "bootc-pipeline" / "templates")


def test_plain_http_comes_from_the_environment() -> None:
    assert lima_plugin.options_from_env({}).plain_http is False
    assert lima_plugin.options_from_env({lima_plugin.PLAIN_HTTP_ENV: "1"}).plain_http is True
    assert lima_plugin.options_from_env({lima_plugin.PLAIN_HTTP_ENV: "0"}).plain_http is False


def run_plugin(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """The installed console script, as Lima runs it: REST as the only argument."""
    return subprocess.run(
        [str(plugin()), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


@pytest.mark.parametrize(
    ("args", "code", "names"),
    [
        ([], 2, "expected one argument"),
        (["a", "b"], 2, "expected one argument"),
        (["//"], 2, "no reference given"),
        (["ghcr.io/O/R:1"], 2, "ghcr.io/O/R:1"),  # uppercase repository
    ],
)
def test_bad_input_is_one_line_exit_2_and_nothing_on_stdout(
    tmp_path: Path, args: list[str], code: int, names: str
) -> None:
    env = cli_env(tmp_path / "home", chunk_size=1 << 20, extra={"XDG_CACHE_HOME": str(tmp_path)})
    proc = run_plugin(*args, env=env)
    assert proc.returncode == code
    assert proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("limactl-url-oras")
    assert names in proc.stderr
    assert not (tmp_path / "bootc-pipeline").exists()


# -- against a published release -----------------------------------------------------------------


Published = PublishedRelease


def plugin_env(published: Published, cache: Path) -> dict[str, str]:
    return published.env(XDG_CACHE_HOME=str(cache), **{lima_plugin.PLAIN_HTTP_ENV: "1"})


def uncompressed(published: Published, arch: Arch) -> str:
    digest: str = published.report["architectures"][arch.value]["uncompressed"]["digest"]
    return digest


def publish_template(published: Published) -> Path:
    """The publish-time template (blob URLs on the registry)."""
    return published.work.variant_dir / "lima-fedora-40.yaml"


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Published]:
    with published_release(tmp_path_factory.mktemp("plugin")) as release:
        yield release


def sha256sum(path: Path) -> str:
    out = subprocess.run(["sha256sum", str(path)], capture_output=True, text=True, check=True)
    return "sha256:" + out.stdout.split()[0]


def body(path: Path) -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(path.read_text())
    return document


def index_digest(published: Published) -> str:
    answer = requests.head(
        f"http://{published.registry.host}/v2/{REPO}/manifests/{TAG}",
        headers={"Accept": INDEX}, timeout=10,
    )  # fmt: skip
    answer.raise_for_status()
    return answer.headers["Docker-Content-Digest"]


@pytest.mark.integration
def test_plugin_prints_only_the_path_of_the_template_lima_ref_writes(
    published: Published, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    ref = f"{published.registry.host}/{REPO}:{TAG}"
    proc = run_plugin(ref, env=plugin_env(published, cache))
    assert proc.returncode == 0, proc.stderr
    (line,) = proc.stdout.splitlines()
    path = Path(line)
    assert path.is_absolute() and path.is_relative_to(cache / "bootc-pipeline" / "templates")
    assert path.name == "fedora-bootc-lima.yaml"  # Lima's instance name
    assert "lima template" in proc.stderr  # progress: on stderr
    document = body(path)
    host = Arch.host()
    (image,) = document["images"]  # the host's architecture only
    assert image["arch"] == host.lima
    assert image["digest"] == uncompressed(published, host) == sha256sum(Path(image["location"]))

    # the same writer as `bootc-pipeline lima REF`: the same document, the same cached disk
    other = tmp_path / "other.yaml"
    lima_ref = subprocess.run(
        [sys.executable, "-m", "pipeline", "lima", ref, "--plain-http", "-o", str(other)],
        env=plugin_env(published, cache),
        capture_output=True, text=True, timeout=TIMEOUT, check=False,
    )  # fmt: skip
    assert lima_ref.returncode == 0, lima_ref.stderr
    assert body(other) == document
    # and the publish-time template's settings
    assert {k: v for k, v in body(publish_template(published)).items() if k != "images"} == {
        k: v for k, v in document.items() if k != "images"
    }


@pytest.mark.integration
def test_double_slash_and_digest_spellings_resolve_the_same_release(
    published: Published, tmp_path: Path
) -> None:
    host = published.registry.host
    first = run_plugin(f"//{host}/{REPO}:{TAG}", env=plugin_env(published, tmp_path / "c"))
    assert first.returncode == 0, first.stderr
    by_digest = run_plugin(
        f"{host}/{REPO}@{index_digest(published)}", env=plugin_env(published, tmp_path / "c")
    )
    assert by_digest.returncode == 0, by_digest.stderr
    assert first.stdout != by_digest.stdout  # one template per reference
    assert (
        body(Path(first.stdout.strip()))["images"] == body(Path(by_digest.stdout.strip()))["images"]
    )
    assert "in cache" in by_digest.stderr  # the second resolution downloaded nothing


@pytest.mark.integration
def test_a_missing_tag_is_one_line_naming_the_reference(
    published: Published, tmp_path: Path
) -> None:
    ref = f"{published.registry.host}/{REPO}:no-such-tag"
    proc = run_plugin(ref, env=plugin_env(published, tmp_path / "c"))
    assert proc.returncode != 0
    assert proc.stdout == ""
    errors = [line for line in proc.stderr.splitlines() if "error" in line]
    assert len(errors) == 1 and ref in errors[0] and "no-such-tag" in errors[0], proc.stderr
    assert not list((tmp_path / "c").rglob("*.yaml"))


@pytest.mark.integration
def test_without_the_plain_http_setting_it_says_what_failed(
    published: Published, tmp_path: Path
) -> None:
    ref = f"{published.registry.host}/{REPO}:{TAG}"
    env = plugin_env(published, tmp_path / "c")
    del env[lima_plugin.PLAIN_HTTP_ENV]
    proc = run_plugin(ref, env=env)
    assert proc.returncode != 0 and proc.stdout == ""
    assert proc.stderr.strip().splitlines()[-1].startswith(f"limactl-url-oras: error: {ref}: ")


@pytest.mark.integration
def test_a_corrupt_layer_leaves_nothing_in_the_cache(published: Published, tmp_path: Path) -> None:
    proxy = published.proxy
    proxy.clear_rules()
    proxy.add("corrupt-answer", method="GET", path=BLOBS, fraction=0.7, times=1)
    cache = tmp_path / "c"
    proc = run_plugin(f"{proxy.host}/{REPO}:{TAG}", env=plugin_env(published, cache))
    proxy.clear_rules()
    assert proc.returncode != 0 and proc.stdout == ""
    assert "sha256" in proc.stderr.strip().splitlines()[-1]
    left = [p for p in cache.rglob("*") if p.is_file()]
    assert left == [], left


# -- the real limactl judges (offline: template url, template validate) --------------------------


@pytest.fixture
def lima_user(published: Published) -> Iterator[LimaUser]:
    user = make_lima_user()
    user.extra_env[lima_plugin.PLAIN_HTTP_ENV] = "1"
    yield user
    subprocess.run(["rm", "-rf", str(user.root)], check=False)


def validate(user: LimaUser, locator: str) -> subprocess.CompletedProcess[str]:
    return user.limactl("template", "validate", locator, timeout=TIMEOUT)


@pytest.mark.integration
def test_limactl_template_url_and_validate_take_the_plugins_template(
    published: Published, lima_user: LimaUser
) -> None:
    locator = f"oras:{published.registry.host}/{REPO}:{TAG}"
    url = lima_user.limactl("template", "url", locator)
    assert url.returncode == 0, url.stderr
    path = Path(url.stdout.strip())
    assert path.is_relative_to(lima_user.cache) and path.is_file()
    checked = validate(lima_user, locator)
    assert checked.returncode == 0, checked.stderr
    assert "OK" in checked.stderr
    again = validate(lima_user, str(path))
    assert again.returncode == 0, again.stderr


@pytest.mark.integration
def test_limactl_shows_the_plugins_error(published: Published, lima_user: LimaUser) -> None:
    ref = f"{published.registry.host}/{REPO}:no-such-tag"
    proc = lima_user.limactl("template", "url", f"oras:{ref}")
    assert proc.returncode != 0
    assert f"limactl-url-oras: error: {ref}" in proc.stderr


@pytest.mark.integration
def test_a_users_template_composes_oras_as_its_base(
    published: Published, lima_user: LimaUser
) -> None:
    own = lima_user.root / "mine.yaml"
    own.write_text(
        yaml.safe_dump(
            {
                "base": [f"oras://{published.registry.host}/{REPO}:{TAG}"],
                "cpus": 1,
                "memory": "1536MiB",
                "env": {"MINE": "yes"},
            }
        )
    )
    lima_user.give(own)
    proc = lima_user.limactl("template", "validate", "--fill", str(own))
    assert proc.returncode == 0, proc.stderr
    filled = yaml.safe_load(proc.stdout)
    assert (
        filled["cpus"] == 1 and filled["memory"] == "1536MiB" and filled["env"] == {"MINE": "yes"}
    )
    host = Arch.host()
    assert [i["digest"] for i in filled["images"]] == [uncompressed(published, host)]
    containerd = filled["containerd"]  # --fill adds Lima's default nerdctl archives
    assert (containerd["system"], containerd["user"]) == (False, False)
    assert filled["mountTypesUnsupported"] == ["9p"]


@pytest.mark.integration
def test_limactl_validates_every_template_this_project_writes(
    published: Published, lima_user: LimaUser
) -> None:
    """publish's (blob URLs), `lima REF`'s (cached files) and the plugin's."""
    publish_copy = lima_user.root / "fedora-40.yaml"
    publish_copy.write_bytes(publish_template(published).read_bytes())
    lima_user.give(publish_copy)
    lima_ref = lima_user.root / "lima-ref.yaml"
    cli = str(user_plugin_dir() / "bootc-pipeline")  # the user's own install of the package
    made = lima_user.run(
        cli, "lima", f"{published.registry.host}/{REPO}:{TAG}",
        "--plain-http", "--platform", "all", "-o", str(lima_ref), timeout=TIMEOUT,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    for locator in (
        str(publish_copy),
        str(lima_ref),
        f"oras:{published.registry.host}/{REPO}:{TAG}",
    ):
        proc = validate(lima_user, locator)
        assert proc.returncode == 0, f"{locator}: {proc.stderr}"
    for arch in (Arch("amd64"), Arch("arm64")):  # both architectures, with --platform all
        assert arch.lima in [i["arch"] for i in body(lima_ref)["images"]]
    assert (
        hashlib.sha256(publish_copy.read_bytes()).hexdigest()
        == hashlib.sha256(publish_template(published).read_bytes()).hexdigest()
    )
