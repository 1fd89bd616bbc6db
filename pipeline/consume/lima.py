"""`lima REF`: pull a release into a verified cache and write a Lima template that uses it.

Lima's downloader does one plain GET without registry token auth, so a template pointing at a
registry blob URL fails on ghcr.io and quay.io (401 to anonymous blob reads). This command does
the registry part (tokens, redirects, resume, verification: `pull`) and hands Lima a local file
with its digest. Verified disks are cached by layer digest under
`$XDG_CACHE_HOME/bootc-pipeline/disks` (default ~/.cache), so a second run downloads nothing.
The template's settings are the release's own (the Lima annotations its manifests carry,
pipeline/model/lima_settings.py), the defaults for a release published before they were.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pipeline.consume import pull
from pipeline.core.arch import Arch
from pipeline.core.digest import Blob
from pipeline.core.errors import PipelineError
from pipeline.core.files import atomic_write
from pipeline.core.progress import Reporter
from pipeline.core.reference import Reference, parse_reference
from pipeline.model import lima_settings, report
from pipeline.registry.client import RegistryClient
from pipeline.shared import readback
from pipeline.shared.context import Options
from pipeline.trust.verify import TrustPolicy

INSTALL_HINT = (
    "install Lima (https://lima-vm.io/docs/installation/: `brew install lima`, or a release "
    "tarball from https://github.com/lima-vm/lima/releases)"
)


def cache_dir() -> Path:
    """`$XDG_CACHE_HOME/bootc-pipeline` (XDG base directory spec: ignored unless absolute)."""
    base = os.environ.get("XDG_CACHE_HOME", "")
    root = Path(base) if base and Path(base).is_absolute() else Path.home() / ".cache"
    return root / "bootc-pipeline"


@dataclass(frozen=True)
class CachedDisk:
    arch: Arch
    path: Path
    layer: Blob
    uncompressed: Blob
    downloaded: int
    lima: lima_settings.Settings | None = None  # what the release says its template needs

    def image(self) -> dict[str, Any]:
        """A Lima `images:` entry: the local file and the digest Lima checks it against."""
        return {
            "location": str(self.path),
            "arch": self.arch.lima,
            "digest": self.uncompressed.digest,
        }


@dataclass(frozen=True)
class Made:
    template: Path
    disks: list[CachedDisk]

    def as_json(self) -> dict[str, Any]:
        return {
            "template": str(self.template),
            "images": [
                {
                    "arch": d.arch.value,
                    "path": str(d.path),
                    "layer": asdict(d.layer),
                    "uncompressed": asdict(d.uncompressed),
                    "downloaded": d.downloaded,
                }
                for d in self.disks
            ],
        }


def _archs(client: RegistryClient, ref: Reference, platforms: str | None) -> list[Arch]:
    if platforms is None:
        return [Arch.host()]
    if platforms != "all":
        return list(dict.fromkeys(pull.parse_platform(p) for p in platforms.split(",")))
    return readback.platforms(client, ref)


def cached_pull(
    client: RegistryClient,
    ref: Reference,
    arch: Arch,
    directory: Path,
    reporter: Reporter,
    trust: TrustPolicy,
) -> CachedDisk:
    """The disk for `arch`, from the cache if it holds the same layer verified, else pulled."""
    chosen = readback.resolve(client, ref, arch, trust=trust)
    layer = chosen.layer.blob
    disk = directory / f"{layer.hex}.qcow2"
    record = directory / f"{layer.hex}.json"
    if record.exists() and disk.exists():
        try:
            kept = json.loads(record.read_text())
            plain = Blob(kept["uncompressed"]["digest"], int(kept["uncompressed"]["size"]))
        except (ValueError, KeyError, TypeError):
            plain = None
        if plain is not None and disk.stat().st_size == plain.size:
            reporter.info(f"{arch.value}: verified copy of {layer.digest} in cache: {disk}")
            return CachedDisk(arch, disk, layer, plain, 0, chosen.lima)
    pulled = pull.download(client, chosen, disk, keep_compressed=False, reporter=reporter)
    atomic_write(
        record,
        json.dumps({"layer": asdict(layer), "uncompressed": asdict(pulled.uncompressed)}).encode(),
    )
    return CachedDisk(arch, disk, layer, pulled.uncompressed, pulled.downloaded, chosen.lima)


def settings(ref: Reference, disks: list[CachedDisk], reporter: Reporter) -> lima_settings.Settings:
    """The release's own Lima settings (every manifest of a release carries the same), or the
    defaults for a release from before they were carried, said once."""
    carried = {d.lima for d in disks}
    if len(carried) > 1:
        raise PipelineError(f"{ref}: its manifests carry different Lima settings")
    return lima_settings.of_release(carried.pop() if carried else None, str(ref), reporter.info)


def make_template(
    reference: str,
    *,
    platforms: str | None,
    template: Path | None,
    options: Options,
    reporter: Reporter,
) -> Made:
    ref = parse_reference(reference)
    directory = cache_dir() / "disks"
    trust = TrustPolicy.for_reference(options.public_key, ref.name, reporter)
    with options.registry_client(ref.registry) as client:
        disks = [
            cached_pull(client, ref, arch, directory, reporter, trust)
            for arch in _archs(client, ref, platforms)
        ]
    path = template or Path.cwd() / f"lima-{ref.repository.rsplit('/', 1)[-1]}.yaml"
    header = lima_settings.header(
        f"Lima template for {ref}, made by `bootc-pipeline lima`.",
        "Its images are local copies verified against the registry's digests.",
        f"Start it with: limactl start {path}",
    )
    document = lima_settings.template([d.image() for d in disks], settings(ref, disks, reporter))
    report.write_lima_template(path, document, header=header)
    reporter.info(f"lima template: {path}")
    return Made(path, disks)


def start(template: Path, reporter: Reporter) -> None:
    """`limactl start TEMPLATE`, or how to get Lima when it is not installed."""
    limactl = shutil.which("limactl")
    if limactl is None:
        raise PipelineError(
            f"limactl is not on PATH: the template {template} is written but not started",
            hint=f"{INSTALL_HINT}, then run: limactl start {template}",
        )
    reporter.info(f"limactl start {template}")
    done = subprocess.run([limactl, "start", str(template)], check=False)
    if done.returncode != 0:
        raise PipelineError(f"limactl start {template} failed (exit status {done.returncode})")
