"""`pull REF`: a release's disk out of a registry, verified, in one streaming pass.

Resolve the reference (index → the platform's manifest → its qcow2+zstd layer: pipeline/
readback.py), then stream the layer: each block is appended to a partial `.zst` beside the
output (so a killed run resumes where it stopped, with a Range request), hashed, and fed to the
zstd decompressor, whose output is hashed and written to a temporary file. Only when the layer's
sha256 and size match its descriptor, and the qcow2's match the
`org.bootc-pipeline.disk.uncompressed-*` annotations (when the publisher wrote them), is the
temporary file renamed to the output. A mismatch deletes both and names expected and received.
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, BinaryIO

from pipeline.core.arch import Arch
from pipeline.core.digest import Blob
from pipeline.core.errors import PipelineError, UsageError
from pipeline.core.files import WriteBehind, atomic_output, fsync_directory
from pipeline.core.progress import Reporter
from pipeline.core.reference import parse_reference
from pipeline.core.zstdfile import CHUNK, Decompressor
from pipeline.model import pullplan
from pipeline.registry.client import RegistryClient
from pipeline.shared.context import Options
from pipeline.shared.readback import Chosen, resolve  # reading the release back: readback.py
from pipeline.trust.verify import TrustPolicy


@dataclass(frozen=True)
class Pulled:
    path: Path
    chosen: Chosen
    uncompressed: Blob
    downloaded: int  # bytes fetched from the registry by this run
    resumed_from: int  # bytes an earlier (interrupted) run had left

    def as_json(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "reference": str(self.chosen.reference),
            "manifest": self.chosen.manifest,
            "platform": self.chosen.arch.platform if self.chosen.arch else None,
            "layer": asdict(self.chosen.layer.blob),
            "uncompressed": asdict(self.uncompressed),
            "downloaded": self.downloaded,
            "resumedFrom": self.resumed_from,
        }


def parse_platform(text: str) -> Arch:
    """`linux/arm64` (or just `arm64`); only Linux disks exist."""
    os_name, sep, arch = text.rpartition("/")
    if sep and os_name != "linux":
        raise UsageError(f"platform {text!r}: only linux/<arch> disks are published")
    return Arch.parse(arch)


def partial_path(directory: Path, layer: Blob) -> Path:
    """Where the compressed bytes collect until verified (named by digest: never mixed up)."""
    return directory / f".{layer.hex}.zst.partial"


def download(
    client: RegistryClient,
    chosen: Chosen,
    dest: Path,
    *,
    keep_compressed: bool,
    reporter: Reporter,
) -> Pulled:
    """Stream the chosen layer to `dest` (the qcow2, or the .zst with `keep_compressed`)."""
    layer = chosen.layer
    repo = chosen.reference.repository
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = partial_path(dest.parent, layer.blob)
    output: contextlib.AbstractContextManager[BinaryIO | None] = (
        contextlib.nullcontext() if keep_compressed else atomic_output(dest)
    )
    have = 0
    try:
        with contextlib.ExitStack() as stack:
            part = stack.enter_context(partial.open("ab"))
            _lock(part, partial)
            for stale in dest.parent.glob(f".{glob.escape(dest.name)}.*.tmp"):
                stale.unlink(missing_ok=True)  # a killed run's decompressed half
            out = stack.enter_context(output)
            have = part.seek(0, os.SEEK_END)
            if have > layer.blob.size:
                part.truncate(0)
                have = 0
            if have:
                reporter.info(
                    f"resuming: {have} of {layer.blob.size} bytes kept from an earlier run"
                )
            decompressor = stack.enter_context(Decompressor(out))
            _replay(partial, have, decompressor)
            title = f"{chosen.arch.value + ' ' if chosen.arch else ''}{layer.blob.digest[:19]}"
            behind = WriteBehind(part.fileno(), start=have) if keep_compressed else None
            with reporter.transfer(f"pull {title}", layer.blob.size) as advance:
                advance(have)
                blocks = client.iter_blob(repo, layer.blob.digest, size=layer.blob.size, start=have)
                for block in blocks:
                    part.write(block)
                    decompressor.feed(block)
                    advance(len(block))
                    if behind is not None:
                        behind.wrote(len(block))
            part.flush()
            if keep_compressed:  # the partial becomes the output; else it is only a resume point
                os.fsync(part.fileno())
            plain = _verify(chosen, decompressor)
    except OSError as exc:  # the partial .zst (the qcow2's own errors come as PipelineError)
        raise PipelineError(
            f"cannot write {partial}: {exc.strerror}",
            hint=f"free space in {dest.parent} and re-run: the bytes already there are kept",
        ) from None
    except PipelineError as exc:
        if isinstance(exc, _Refused) or not partial.exists():
            partial.unlink(missing_ok=True)
        elif exc.hint is None:
            exc.hint = f"re-run to resume: {partial.stat().st_size} bytes are kept in {partial}"
        raise
    if keep_compressed:
        os.chmod(partial, 0o644)
        os.replace(partial, dest)
        fsync_directory(dest.parent)
    else:
        partial.unlink()
    return Pulled(dest, chosen, plain, layer.blob.size - have, have)


def _lock(part: BinaryIO, partial: Path) -> None:
    """One pull per layer and directory at a time: a second would interleave the bytes."""
    try:
        fcntl.flock(part.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise UsageError(
            f"another pull is writing {partial}", hint="wait for it to finish, then re-run"
        ) from None


def _replay(partial: Path, have: int, decompressor: Decompressor) -> None:
    """Feed what an earlier run downloaded through the hashes and the decompressor again."""
    with partial.open("rb") as kept:
        left = have
        while left > 0 and (block := kept.read(min(CHUNK, left))):
            decompressor.feed(block)
            left -= len(block)


class _Refused(PipelineError):
    """The bytes are not what the manifest promised: nothing of them may be kept."""


def _verify(chosen: Chosen, decompressor: Decompressor) -> Blob:
    """The layer's digest first (bad bytes are a mismatch), then what it decompressed to."""
    layer = chosen.layer
    here = f"layer {layer.blob.digest}"
    compressed = decompressor.compressed.blob()
    if compressed != layer.blob:
        raise _Refused(
            f"{here} does not match its digest: expected {layer.blob.digest} "
            f"({layer.blob.size} bytes), received {compressed.digest} ({compressed.size} bytes)"
        )
    try:
        plain = decompressor.finish()
    except PipelineError as exc:
        raise _Refused(f"{here}: {exc.message}") from None
    if layer.uncompressed_digest is not None and plain.digest != layer.uncompressed_digest:
        raise _Refused(
            f"{here}: decompressed disk does not match its annotation: expected "
            f"{layer.uncompressed_digest}, received {plain.digest}"
        )
    if layer.uncompressed is not None and plain.size != layer.uncompressed.size:
        raise _Refused(
            f"{here}: decompressed disk is {plain.size} bytes, annotation says "
            f"{layer.uncompressed.size}"
        )
    return plain


def pull(
    reference: str,
    *,
    arch: Arch,
    output: str | None,
    keep_compressed: bool,
    options: Options,
    reporter: Reporter,
) -> Pulled:
    ref = parse_reference(reference)
    trust = TrustPolicy.for_reference(options.public_key, ref.name, reporter)
    with options.registry_client(ref.registry) as client:
        chosen = resolve(client, ref, arch, trust=trust)
        where_ = f"{ref} manifest {chosen.manifest}"
        name = pullplan.compressed_name(chosen.layer, ref.repository, chosen.arch, where_)
        if not keep_compressed:
            name = name.removesuffix(".zst")
        dest = pullplan.output_path(output, name)
        reporter.info(
            f"{ref}: {chosen.arch.platform if chosen.arch else 'manifest'} {chosen.manifest}, "
            f"layer {chosen.layer.blob.digest} ({chosen.layer.blob.size} bytes) -> {dest}"
        )
        pulled = download(client, chosen, dest, keep_compressed=keep_compressed, reporter=reporter)
    reporter.info(
        f"pulled {dest}: sha256 {pulled.uncompressed.digest}, {pulled.uncompressed.size} bytes"
        + (
            " (checked against the publisher's annotation)"
            if chosen.layer.uncompressed_digest
            else ""
        )
    )
    return pulled
