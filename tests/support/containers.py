"""Running a builder container to its end through the Docker SDK, as the pipeline's engine.py
does (privileged, `label=type:unconfined_t`, no network), for the stand-ins' tests."""

from __future__ import annotations

from typing import Any

TIMEOUT = 300


def run_to_end(
    client: Any,
    image: str,
    command: list[str],
    volumes: dict[str, dict[str, str]],
    *,
    privileged: bool = True,
) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of one container run; the container is removed."""
    container = client.containers.run(
        image,
        command=command,
        privileged=privileged,
        security_opt=["label=type:unconfined_t"],
        volumes=volumes,
        network_mode="none",
        detach=True,
    )
    try:
        status = int(container.wait(timeout=TIMEOUT)["StatusCode"])
        stdout = container.logs(stdout=True, stderr=False).decode(errors="replace")
        stderr = container.logs(stdout=False, stderr=True).decode(errors="replace")
    finally:
        container.remove(force=True)
    return status, stdout, stderr
