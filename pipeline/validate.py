"""`validate REF`: fetch a published index or manifest back and check everything it references.

Schemas (the OCI rules plus this project's policy), digests and sizes of each manifest, the
empty config, and the layers (present; with --fetch-blobs also downloaded and hashed).
"""

from __future__ import annotations

import base64
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline import mediatypes as mt
from pipeline import schemas
from pipeline.context import Options
from pipeline.digest import of_bytes
from pipeline.errors import PipelineError
from pipeline.progress import Reporter
from pipeline.reference import parse_reference
from pipeline.registry.client import RegistryClient


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


def _check_manifest(
    client: RegistryClient,
    repo: str,
    digest: str,
    expected: dict[str, Any] | None,
    found: Findings,
    *,
    fetch_blobs: bool,
) -> None:
    fetched = client.get_manifest(repo, digest, accept=[mt.OCI_MANIFEST])
    where = f"manifest {digest}"
    found.check(
        fetched.digest == digest,
        f"{where}: digest",
        f"{where}: served bytes hash to {fetched.digest}",
    )
    if expected is not None:
        found.check(
            expected.get("size") == len(fetched.body),
            f"{where}: size",
            f"{where}: index says {expected.get('size')} bytes, served {len(fetched.body)}",
        )
    document = fetched.json()
    found.schema(schemas.ARTIFACT_MANIFEST, where, document)
    if expected is not None:
        arch = (expected.get("platform") or {}).get("architecture")
        titles = [
            (layer.get("annotations") or {}).get(mt.ANN_TITLE, "")
            for layer in document.get("layers") or []
        ]
        found.check(
            all(t.endswith(f"-{arch}.qcow2.zst") for t in titles),
            f"{where}: platform matches layer titles",
            f"{where}: platform {arch} but layers titled {titles}",
        )
    config = document.get("config") or {}
    data = config.get("data")
    if isinstance(data, str):
        inline = of_bytes(base64.b64decode(data))
        found.check(
            (inline.digest, inline.size) == (config.get("digest"), config.get("size")),
            f"{where}: config data",
            f"{where}: config data does not match its digest/size",
        )
    if isinstance(config.get("digest"), str):
        found.check(
            client.blob_exists(repo, config["digest"]),
            f"{where}: config blob present",
            f"{where}: config blob {config['digest']} missing",
        )
    for layer in document.get("layers") or []:
        layer_digest, size = layer.get("digest"), layer.get("size")
        if not isinstance(layer_digest, str):
            continue
        if not fetch_blobs:
            found.check(
                client.blob_exists(repo, layer_digest),
                f"layer {layer_digest}: present",
                f"layer {layer_digest}: missing from {repo}",
            )
            continue
        with tempfile.TemporaryDirectory(prefix="bootc-pipeline-validate-") as tmp:
            try:
                client.fetch_blob(repo, layer_digest, Path(tmp) / "layer", size=size)
                found.checked.append(f"layer {layer_digest}: sha256 and size")
            except PipelineError as exc:
                found.problems.append(f"layer {layer_digest}: {exc.message}")


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
            index = top.json()
            found.schema(schemas.ARTIFACT_INDEX, f"index {top.digest}", index)
            for entry in index.get("manifests") or []:
                if isinstance(entry.get("digest"), str):
                    _check_manifest(
                        client,
                        ref.repository,
                        entry["digest"],
                        entry,
                        found,
                        fetch_blobs=fetch_blobs,
                    )
        elif top.media_type == mt.OCI_MANIFEST:
            _check_manifest(
                client, ref.repository, top.digest, None, found, fetch_blobs=fetch_blobs
            )
        else:
            found.problems.append(f"{ref}: unexpected media type {top.media_type}")
    for problem in found.problems:
        reporter.info(f"FAIL {problem}")
    verdict = "valid" if not found.problems else "INVALID"
    reporter.info(
        f"{ref}: {verdict} ({len(found.checked)} checks passed, {len(found.problems)} failed)"
    )
    return not found.problems
