"""The one chokepoint to the container engine (Docker Engine or Podman, via the Docker API)."""

from __future__ import annotations

import io
import json
import logging
import os
import tarfile
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import docker.errors
import requests

from pipeline.core.arch import Arch
from pipeline.core.errors import PipelineError
from pipeline.model import pullplan
from pipeline.model.bib import BuilderRun, error_lines

log = logging.getLogger("pipeline.shared.engine")
LIBPOD_API = "/v4.0.0/libpod"  # Podman's own API, for what the Docker API cannot say
LOG_TAIL = 25  # lines of a failed build or builder run shown in the error


@dataclass(frozen=True)
class ImageFacts:
    id: str
    os: str
    arch: str
    labels: dict[str, str]
    repo_digests: tuple[str, ...]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__


def _image_facts(attrs: dict[str, Any]) -> ImageFacts:
    config = attrs.get("Config") or {}
    return ImageFacts(
        id=attrs["Id"] if attrs["Id"].startswith("sha256:") else "sha256:" + attrs["Id"],
        os=attrs.get("Os", ""),
        arch=attrs.get("Architecture", ""),
        labels=dict(config.get("Labels") or {}),
        repo_digests=tuple(attrs.get("RepoDigests") or ()),
    )


class Engine:
    """A connected engine: builds images and runs bootc-image-builder."""

    def __init__(self, client: docker.DockerClient, url: str) -> None:
        self.client = client
        self.url = url
        info = client.info()
        version = client.version()
        names = [c.get("Name", "") for c in version.get("Components") or []]
        self.is_podman = any("podman" in n.lower() for n in names)
        self.graph_root = Path(info.get("DockerRootDir") or "/var/lib/containers/storage")
        self.storage_driver = str(info.get("Driver", ""))
        self.name = "Podman" if self.is_podman else "Docker Engine"
        self.version = str(version.get("Version", "?"))

    @classmethod
    def connect(cls, url: str | None) -> Engine:
        """Connect to `url` (else DOCKER_HOST, else the default socket) and check it answers."""
        where = url or os.environ.get("DOCKER_HOST") or "the default socket"
        try:
            if url:
                client = docker.DockerClient(base_url=url, timeout=600)
            else:
                client = docker.from_env(timeout=600)
            client.ping()
            return cls(client, url or os.environ.get("DOCKER_HOST", "default"))
        except (docker.errors.DockerException, requests.RequestException) as exc:
            reason = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
            raise PipelineError(
                f"cannot reach the container engine at {where}: {reason}",
                hint="start it (e.g. `podman system service --time=0 unix:///run/podman/"
                "podman.sock`) and pass --engine or set DOCKER_HOST",
            ) from None

    def describe(self) -> str:
        return f"{self.name} {self.version} at {self.url}"

    def inspect(self, ref: str) -> ImageFacts | None:
        try:
            return _image_facts(self.client.api.inspect_image(ref))
        except docker.errors.ImageNotFound:
            return None
        except docker.errors.APIError as exc:
            if exc.status_code == 404:
                return None
            raise PipelineError(
                f"{self.name} could not inspect image {ref}: {exc.explanation}"
            ) from None
        except (docker.errors.DockerException, requests.RequestException) as exc:
            reason = _first_line(exc)
            raise PipelineError(f"{self.name} could not inspect image {ref}: {reason}") from None

    def tag(self, image: str, name: str) -> None:
        """Give IMAGE (a name or id) the further name NAME (`registry/path:tag`)."""
        repository, _, tag = name.rpartition(":")
        if "/" in tag or not repository:
            raise PipelineError(f"cannot tag {image} as {name}: the name has no tag")
        try:
            if not self.client.api.tag(image, repository, tag):
                raise PipelineError(f"{self.name} refused to tag {image} as {name}")
        except (docker.errors.DockerException, requests.RequestException) as exc:
            raise PipelineError(
                f"{self.name} could not tag {image} as {name}: {_first_line(exc)}"
            ) from None

    def save_image(self, ref: str, dest: Path) -> Path:
        """The image as a docker-archive tar (`docker save`; Podman's API serves the same),
        streamed to `dest`: what an SBOM tool reads without access to the engine's store."""
        try:
            chunks = self.client.images.get(ref).save(named=True)
            with dest.open("wb") as out:
                for chunk in chunks:
                    out.write(chunk)
        except (docker.errors.DockerException, requests.RequestException) as exc:
            dest.unlink(missing_ok=True)
            raise PipelineError(
                f"{self.name} could not save image {ref}: {_first_line(exc)}"
            ) from None
        return dest

    def base_digest(self, ref: str, arch: Arch) -> str:
        """The digest of the image `ref` names for `arch`: the base a build for that platform
        used. A multi-arch name resolves, through the Docker API, to one (the host's) instance,
        so on Podman the list is read through its libpod API and the instance picked by
        platform; elsewhere the engine holds one platform per name and it must be `arch`'s."""
        if "@sha256:" in ref:
            return ref.rsplit("@", 1)[1]
        if self.is_podman:
            instance = self._list_instance(ref, arch)
            if instance is not None:
                return instance
        facts = self.inspect(ref)
        if facts is None:
            raise PipelineError(f"the base image {ref} is not in {self.name} after the build")
        if (facts.os, facts.arch) != ("linux", arch.value):
            raise PipelineError(
                f"{self.name} resolves the base image {ref} to {facts.os}/{facts.arch}, "
                f"not {arch.platform}: cannot tell which base the {arch.value} build used"
            )
        digests = [d.split("@", 1)[1] for d in facts.repo_digests if "@" in d]
        return digests[0] if digests else facts.id

    def _list_instance(self, ref: str, arch: Arch) -> str | None:
        """Podman only: the digest of `arch`'s instance if `ref` is a manifest list."""
        api = self.client.api
        try:
            response = api.get(f"{api.base_url}{LIBPOD_API}/manifests/{ref}/json", timeout=60)
            if response.status_code == 404:
                # Podman 4.3 answers 404 for a local image that is not a manifest list (it
                # then looked for one remotely): a plain image. Anything else but 200 is a
                # failure to report, not an answer.
                return None
            if response.status_code != 200:
                raise PipelineError(
                    f"{self.name} could not read manifest list {ref}: "
                    f"{response.status_code} {_libpod_message(response)}"
                )
            listing = response.json()
        except (requests.RequestException, ValueError) as exc:
            raise PipelineError(f"{self.name} could not read manifest list {ref}: {exc}") from None
        if not isinstance(listing, dict):
            raise PipelineError(f"{self.name} answered manifest list {ref} with no JSON object")
        found = pullplan.linux_digests(listing, f"{self.name} manifest list {ref}")
        if arch.value in found:
            return found[arch.value]
        raise PipelineError(f"the base image {ref} is a manifest list with no {arch.platform}")

    def read_file(self, image: str, path: str) -> bytes | None:
        """The regular file PATH in IMAGE, None if the image has no such file: copied out of a
        container that is created, never started, and removed."""
        where = f"{path} in {image}"
        try:
            container = self.client.containers.create(image, command=["/bin/true"])
        except (docker.errors.DockerException, requests.RequestException) as exc:
            raise PipelineError(f"{self.name} could not read {where}: {_first_line(exc)}") from None
        try:
            chunks, _ = container.get_archive(path)
            data = b"".join(chunks)
        except docker.errors.NotFound:
            return None
        except (docker.errors.DockerException, requests.RequestException) as exc:
            raise PipelineError(f"{self.name} could not read {where}: {_first_line(exc)}") from None
        finally:
            _remove(container, f"the container that read {where}")
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            member = tar.next()
            if member is None or not member.isfile():
                raise PipelineError(f"{where} is not a regular file (a link or a directory)")
            extracted = tar.extractfile(member)
            assert extracted is not None  # a regular file's member always has data
            return extracted.read()

    def build(
        self,
        *,
        context: Path,
        containerfile: Path,
        tag: str,
        arch: Arch,
        buildargs: dict[str, str],
        on_line: Callable[[str], None],
    ) -> ImageFacts:
        """Build one architecture, streaming the log; check the result's platform, not the flag."""
        tail: deque[str] = deque(maxlen=LOG_TAIL)
        try:
            stream: Iterator[dict[str, Any]] = self.client.api.build(
                path=str(context),
                dockerfile=str(containerfile.relative_to(context)),
                tag=tag,
                platform=arch.platform,
                buildargs=buildargs,
                rm=True,
                forcerm=True,
                pull=False,
                decode=True,
            )
            error = None
            for chunk in stream:
                text = chunk.get("stream") or chunk.get("status") or ""
                for line in text.splitlines():
                    if line.strip():
                        tail.append(line.rstrip())
                        on_line(line.rstrip())
                if "error" in chunk or "errorDetail" in chunk:
                    error = chunk.get("error") or chunk["errorDetail"].get("message", "")
        except (docker.errors.DockerException, requests.RequestException) as exc:
            error = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if error:
            last = "\n  ".join(tail)
            raise PipelineError(
                f"building {tag} for {arch.platform} failed: {error.strip()}\n"
                f"last lines of the build log:\n  {last}"
            )
        facts = self.inspect(tag)
        if facts is None:
            raise PipelineError(f"{self.name} reported success but has no image {tag}")
        if (facts.os, facts.arch) != ("linux", arch.value):
            raise PipelineError(
                f"built {tag} for {arch.platform} but the image says {facts.os}/{facts.arch}",
                hint="the engine ignored the platform; check qemu-user-static/binfmt and the base "
                "image's platforms",
            )
        return facts

    def ensure_pinned(
        self, ref: str, arch: Arch, *, tls_verify: bool, on_line: Callable[[str], None]
    ) -> ImageFacts:
        """REGISTRY/REPO@DIGEST in the engine, pulled for `arch` when missing. A digest names
        one image whatever the local tags say, so no name is shared between platforms. Podman
        is asked through its libpod API, which can skip TLS for a loopback registry the user
        gave --plain-http for; Docker Engine treats 127.0.0.0/8 registries as insecure itself."""
        facts = self.inspect(ref)
        if facts is not None:
            return facts
        if not self.is_podman:
            return self.ensure_image(ref, on_line=on_line, platform=arch.platform)
        api = self.client.api
        params = {
            "reference": ref,
            "tlsVerify": "true" if tls_verify else "false",
            "arch": arch.value,
            "os": "linux",
            "policy": "missing",
        }
        failure = None
        try:
            response = api.post(
                f"{api.base_url}{LIBPOD_API}/images/pull", params=params, stream=True, timeout=600
            )
            if response.status_code != 200:
                failure = f"{response.status_code} {_libpod_message(response)}"
            else:
                for raw in response.iter_lines():
                    event = json.loads(raw) if raw.strip() else {}
                    if event.get("error"):
                        failure = " ".join(str(event["error"]).split())[:300]
                    elif event.get("stream"):
                        on_line(str(event["stream"]).strip())
        except (requests.RequestException, ValueError) as exc:
            failure = _first_line(exc)
        facts = self.inspect(ref) if failure is None else None
        if facts is None:
            raise PipelineError(
                f"cannot pull the base {ref} into {self.name}: {failure or 'not there after'}",
                hint="check that the base's registry answers, or load the base into the engine",
            )
        return facts

    def ensure_image(
        self, ref: str, *, on_line: Callable[[str], None], platform: str | None = None
    ) -> ImageFacts:
        """`ref` in the engine, pulled first if it is missing (the builder image: bib itself
        never pulls the bootc image, but its own image may come from a registry)."""
        facts = self.inspect(ref)
        if facts is not None:
            return facts
        repository, _, tag = ref.rpartition(":") if "@" not in ref else (ref, "", "")
        if "/" in tag:  # a registry port, not a tag
            repository, tag = ref, ""
        failure = None
        try:
            events = self.client.api.pull(
                repository, tag or None, stream=True, decode=True, platform=platform
            )
            for event in events:
                if "error" in event:
                    failure = str(event["error"]).strip()
                    break
                status = " ".join(str(event.get(k, "")) for k in ("id", "status", "progress"))
                on_line(status.strip())
        except (docker.errors.DockerException, requests.RequestException) as exc:
            failure = _first_line(exc)
        if failure is not None:
            raise PipelineError(
                f"cannot pull {ref} into {self.name}: {failure}",
                hint="load it into the engine first (air-gapped), or pass --builder-image",
            )
        facts = self.inspect(ref)
        if facts is None:
            raise PipelineError(f"{self.name} pulled {ref} but does not have it")
        return facts

    def run_builder(self, run: BuilderRun, *, on_line: Callable[[str], None]) -> list[str]:
        """Run the disk builder (bib or image-builder) to completion; return its log, raising on
        non-zero exit.

        Created, then started inside the block that removes it: a container that fails to
        start (privileges refused) is not left behind."""
        volumes = {str(host): {"bind": dest, "mode": mode} for host, dest, mode in run.mounts}
        try:
            container = self.client.containers.create(
                run.image,
                command=list(run.command),
                privileged=True,
                security_opt=["label=type:unconfined_t"],
                volumes=volumes,
                network_mode="none",
                detach=True,  # as `run(detach=True)`: no attach, or followed logs never end
            )
        except docker.errors.ImageNotFound:
            raise PipelineError(
                f"builder image {run.image} is not available to {self.name}",
                hint="load or pull it into the engine first, or pass --builder-image",
            ) from None
        except (docker.errors.DockerException, requests.RequestException) as exc:
            reason = _first_line(exc)
            raise PipelineError(f"cannot create the {run.image} container: {reason}") from None
        lines: list[str] = []
        status = -1
        try:
            try:
                container.start()
            except docker.errors.APIError as exc:
                hint = None
                if "caps" in str(exc.explanation) or "privileged" in str(exc.explanation):
                    hint = (
                        f"{run.name} needs a privileged container and {self.name} "
                        "could not make one here (a restricted capability bounding set?); "
                        "Podman clamps --privileged to the capabilities the host has"
                    )
                raise PipelineError(
                    f"cannot start {run.image}: {exc.explanation}", hint=hint
                ) from None
            pending = ""
            for raw in container.logs(stream=True, follow=True):
                pending += raw.decode(errors="replace")
                *complete, pending = pending.split("\n")
                for line in complete:
                    lines.append(line.rstrip("\r"))
                    on_line(line.rstrip("\r"))
            if pending:
                lines.append(pending)
                on_line(pending)
            status = int(container.wait().get("StatusCode", -1))
        except (docker.errors.DockerException, requests.RequestException) as exc:
            raise PipelineError(f"lost {run.name}'s container: {_first_line(exc)}") from None
        finally:
            _remove(container, "builder container")
        if status != 0:
            errors = error_lines(lines) or list(lines[-LOG_TAIL:])
            raise PipelineError(f"{run.name} exited with status {status}: " + "\n  ".join(errors))
        return lines


def _remove(container: Any, what: str) -> None:
    """Remove a container we made; a failure is logged, not raised (the work is done)."""
    try:
        container.remove(force=True)
    except (docker.errors.DockerException, requests.RequestException) as exc:
        log.warning("could not remove %s: %s", what, _first_line(exc))


def _libpod_message(response: requests.Response) -> str:
    """The `message` of a libpod error body (one line, bounded), else the HTTP reason."""
    try:
        body = response.json()
    except ValueError:
        body = None
    message = body.get("message") if isinstance(body, dict) else None
    text = str(message) if message else (response.reason or "")
    return " ".join(text.split())[:300]
