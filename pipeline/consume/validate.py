"""`validate REF`: fetch a published index or manifest back and check everything it references.

Schemas (the OCI rules plus this project's policy), digests and sizes of each manifest, the
empty config, and the layers (present; with --fetch-blobs also downloaded and hashed); then the
signatures of the index and each child and the index's referrers (pipeline/trust/audit.py,
verified when a public key is given as for `pull`).

Every document is remote input: whatever its bytes (not JSON, not an object, a `layers` that is
not a list, entries that are not objects, `data` that is not base64, digests that are not
digests), the outcome is a finding (a FAIL line), never a traceback.
"""

from __future__ import annotations

import base64
import json
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.core import mediatypes as mt
from pipeline.core.arch import Arch
from pipeline.core.digest import of_bytes
from pipeline.core.errors import PipelineError
from pipeline.core.progress import Reporter
from pipeline.core.reference import is_digest, parse_reference
from pipeline.model import pullplan, schemas
from pipeline.model.plan import Document
from pipeline.registry.client import RegistryClient
from pipeline.registry.redact import one_line
from pipeline.shared import readback
from pipeline.shared.context import Options
from pipeline.trust.audit import audit
from pipeline.trust.verify import public_key_for

JsonObject = dict[str, Any]


@dataclass
class Findings:
    checked: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def check(self, ok: bool, what: str, problem: str) -> bool:
        (self.checked if ok else self.problems).append(what if ok else problem)
        return ok

    def schema(self, name: str, where: str, document: Any) -> None:
        for p in schemas.problems(name, document):
            self.problems.append(f"{where}: {p}")

    def attempt(self, where: str, step: Callable[[], bool]) -> bool | None:
        """Run a registry step; a failure of it (404, 401, a bad digest) becomes a problem."""
        try:
            return step()
        except PipelineError as exc:
            self.problems.append(f"{where}: {exc.message}")
            return None


def _show(value: Any) -> str:
    """A remote value quoted for a one-line report (bounded: it may be anything)."""
    return one_line(repr(value), limit=80)


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def parse_object(body: bytes, where: str, found: Findings) -> JsonObject | None:
    """The document as a JSON object; None (and a problem) if it is not JSON or not an object."""
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError too
        found.problems.append(f"{where}: not valid JSON")
        return None
    if not isinstance(document, dict):
        found.problems.append(f"{where}: the document is {_kind(document)}, not a JSON object")
        return None
    return document


def object_at(document: JsonObject, key: str, where: str, found: Findings) -> JsonObject:
    """`document[key]` if it is an object; {} if absent or null (the schema says if it must be
    there); {} and a problem if it is something else."""
    value = document.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        found.problems.append(f"{where}: {key} is {_kind(value)}, not an object")
        return {}
    return value


def objects_at(
    document: JsonObject, key: str, where: str, found: Findings
) -> list[tuple[int, JsonObject]]:
    """The objects of the array `document[key]` with their positions; anything else there is
    reported and skipped."""
    value = document.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        found.problems.append(f"{where}: {key} is {_kind(value)}, not an array")
        return []
    items: list[tuple[int, JsonObject]] = []
    for i, item in enumerate(value):
        if isinstance(item, dict):
            items.append((i, item))
        else:
            found.problems.append(f"{where}: {key}[{i}] is {_kind(item)}, not an object")
    return items


def digest_at(document: JsonObject, where: str, found: Findings) -> str | None:
    """`document["digest"]` if it is a `sha256:<hex>` digest, else None (and a problem)."""
    value = document.get("digest")
    if isinstance(value, str) and is_digest(value):
        return value
    found.problems.append(f"{where}: digest {_show(value)} is not a sha256 digest")
    return None


def size_at(document: JsonObject) -> int | None:
    value = document.get("size")
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _check_config(
    client: RegistryClient, repo: str, where: str, config: JsonObject, found: Findings
) -> None:
    data = config.get("data")
    if data is not None:
        inline = None
        if isinstance(data, str):
            try:
                inline = of_bytes(base64.b64decode(data, validate=True))
            except ValueError:  # binascii.Error, or non-ASCII text
                pass
        if inline is None:
            found.problems.append(f"{where}: config data {_show(data)} is not base64")
        else:
            found.check(
                (inline.digest, inline.size) == (config.get("digest"), size_at(config)),
                f"{where}: config data",
                f"{where}: config data does not match its digest/size",
            )
    if "digest" not in config:
        return  # the schema reports a config without a digest
    config_digest = digest_at(config, f"{where}: config", found)
    if config_digest is not None:
        present = found.attempt(
            f"{where}: config blob {config_digest}",
            lambda: client.blob_exists(repo, config_digest),
        )
        if present is not None:
            found.check(
                present,
                f"{where}: config blob present",
                f"{where}: config blob {config_digest} missing",
            )


def _check_layer(
    client: RegistryClient,
    repo: str,
    where: str,
    layer: JsonObject,
    found: Findings,
    *,
    fetch_blobs: bool,
) -> None:
    layer_digest = digest_at(layer, where, found)
    if layer_digest is None:
        return
    what = f"layer {layer_digest}"
    if not fetch_blobs:
        present = found.attempt(what, lambda: client.blob_exists(repo, layer_digest))
        if present is not None:
            found.check(present, f"{what}: present", f"{what}: missing from {repo}")
        return
    with tempfile.TemporaryDirectory(prefix="bootc-pipeline-validate-") as tmp:
        dest = Path(tmp) / "layer"

        def fetch() -> bool:
            client.fetch_blob(repo, layer_digest, dest, size=size_at(layer))
            return True  # fetch_blob raises unless size and sha256 match

        if found.attempt(what, fetch):
            found.checked.append(f"{what}: sha256 and size")


def _check_manifest(
    client: RegistryClient,
    repo: str,
    digest: str,
    expected: JsonObject | None,
    found: Findings,
    *,
    fetch_blobs: bool,
) -> None:
    where = f"manifest {digest}"
    try:
        fetched = client.get_manifest(repo, digest, accept=[mt.OCI_MANIFEST])
    except PipelineError as exc:
        found.problems.append(f"{where}: {exc.message}")
        return
    found.check(
        fetched.digest == digest,
        f"{where}: digest",
        f"{where}: served bytes hash to {fetched.digest}",
    )
    if expected is not None:
        found.check(
            size_at(expected) == len(fetched.body),
            f"{where}: size",
            f"{where}: index says {_show(expected.get('size'))} bytes, served {len(fetched.body)}",
        )
    if not found.check(
        fetched.media_type == mt.OCI_MANIFEST,
        f"{where}: media type",
        f"{where}: served as {_show(fetched.media_type)}, not {mt.OCI_MANIFEST}",
    ):
        return
    document = parse_object(fetched.body, where, found)
    if document is None:
        return
    found.schema(schemas.ARTIFACT_MANIFEST, where, document)
    layers = objects_at(document, "layers", where, found)
    if expected is not None:
        platform = object_at(expected, "platform", f"index entry {digest}", found)
        arch = platform.get("architecture")
        known = {a.value: a for a in Arch}
        named = known.get(arch) if isinstance(arch, str) else None
        found.check(
            named is not None,
            f"{where}: platform",
            f"{where}: index entry platform {_show(arch)} is not one this project publishes",
        )
        if named is not None:
            # what pull, lima and the join read: the layer, its annotations, the title's arch
            manifest = Document(mt.OCI_MANIFEST, fetched.body)
            if found.attempt(
                where, lambda: bool(pullplan.arch_release(manifest, "read back", arch=named))
            ):
                found.checked.append(f"{where}: reads back as the {arch} release")
    _check_config(client, repo, where, object_at(document, "config", where, found), found)
    for i, layer in layers:
        _check_layer(client, repo, f"{where}: layers[{i}]", layer, found, fetch_blobs=fetch_blobs)


def _check_os_image(
    client: RegistryClient, repo: str, digest: str, found: Findings, reporter: Reporter
) -> None:
    """The OS image the release names (its index, each architecture's image by the digest its
    disk names, every blob): a partial OS image makes the release invalid."""

    def check() -> bool:
        index = readback.index_at(client, repo, digest)
        if index is None:
            return False
        archs = readback.arch_releases(
            client, repo, index, tuple(pullplan.linux_archs(index.body, index.where))
        )
        if archs is None:
            return False
        disks = {r.arch: r.manifest for r in archs}
        images = readback.os_images(client, repo, index.annotations, disks)
        if images is None:  # a release from before the OS image was published: nothing partial
            found.checked.append(f"index {digest}: names no OS image")
            return True
        path, _, named = index.annotations[mt.ANN_OS_IMAGE_INDEX].rpartition("@")
        for arch, (image, _) in images.items():
            found.checked.append(
                f"OS image {arch.value}: {image.reference} (origin {image.origin})"
            )
        there = next((i.repository for i, _ in images.values()), f"{client.registry}/{path}")
        line = f"OS image index {there}@{named}: every image and blob present"
        found.checked.append(line)
        reporter.info(line)
        return True

    found.attempt(f"index {digest}: OS image", check)


def validate_reference(
    reference: str, *, options: Options, fetch_blobs: bool, reporter: Reporter
) -> bool:
    ref = parse_reference(reference)
    client = options.registry_client(ref.registry)
    found = Findings()
    with client:
        top = client.get_manifest(ref.repository, ref.digest or ref.tag or "latest")
        reporter.info(f"{ref}: {top.media_type} {top.digest}")
        if top.media_type == mt.OCI_INDEX:
            where = f"index {top.digest}"
            index = parse_object(top.body, where, found)
            if index is not None:
                found.schema(schemas.ARTIFACT_INDEX, where, index)
                children = []
                for i, entry in objects_at(index, "manifests", where, found):
                    digest = digest_at(entry, f"{where}: manifests[{i}]", found)
                    if digest is not None:
                        children.append(digest)
                        _check_manifest(
                            client, ref.repository, digest, entry, found, fetch_blobs=fetch_blobs
                        )
                _check_os_image(client, ref.repository, top.digest, found, reporter)
                key = public_key_for(options.public_key, ref.name)
                for ok, text in audit(client, ref.repository, top.digest, children, key):
                    if ok is None:
                        reporter.info(f"note: {text}")
                    else:
                        found.check(ok, text, text)
        elif top.media_type == mt.OCI_MANIFEST:
            _check_manifest(
                client, ref.repository, top.digest, None, found, fetch_blobs=fetch_blobs
            )
        else:
            found.problems.append(f"{ref}: unexpected media type {_show(top.media_type)}")
    for problem in found.problems:
        reporter.info(f"FAIL {problem}")
    verdict = "valid" if not found.problems else "INVALID"
    reporter.info(
        f"{ref}: {verdict} ({len(found.checked)} checks passed, {len(found.problems)} failed)"
    )
    return not found.problems
