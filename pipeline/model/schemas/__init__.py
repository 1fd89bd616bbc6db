"""The project's JSON Schemas: the release manifest, and the OCI documents it publishes."""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported when a document is checked: `pull` checks none (0.1 s to import)
    from jsonschema import Draft202012Validator

RELEASE_MANIFEST = "release-manifest"
ARTIFACT_MANIFEST = "artifact-manifest"
ARTIFACT_INDEX = "artifact-index"
ARCH_RESULT = "arch-result"


@dataclass(frozen=True)
class Problem:
    """One schema violation: where (a key path such as `builder.rootfs`) and what."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path or '<top level>'}: {self.message}"


@functools.cache
def load(name: str) -> dict[str, Any]:
    text = resources.files(__package__).joinpath(f"{name}.schema.json").read_text()
    schema: dict[str, Any] = json.loads(text)
    return schema


@functools.cache
def _validator(name: str) -> Draft202012Validator:
    from jsonschema import Draft202012Validator

    schema = load(name)
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def _key_path(parts: Any) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


# A schema's own wording for a refused value ("'/var' is not a mountpoint bib accepts: ..."),
# used instead of the validator's ("does not match ..."); 2020-12 allows unknown keywords.
REFUSAL = "x-refusal"

SECRET_KEYS = frozenset({"password"})  # bib's customizations.user[].password


def _holds_secret(path: Any, instance: Any) -> bool:
    """Whether a failing value is, or contains, a secret: messages must not echo it."""
    if any(str(part) in SECRET_KEYS for part in path):
        return True
    if isinstance(instance, dict):
        return any(k in SECRET_KEYS or _holds_secret((), v) for k, v in instance.items())
    if isinstance(instance, list):
        return any(_holds_secret((), v) for v in instance)
    return False


def problems(name: str, instance: Any) -> list[Problem]:
    """All violations of schema `name`, ordered by key path, each as a value (not raised)."""
    errors = sorted(_validator(name).iter_errors(instance), key=lambda e: list(map(str, e.path)))
    found: list[Problem] = []
    for error in errors:
        message = error.message
        if _holds_secret(error.absolute_path, error.instance):
            message = message.replace(repr(error.instance), "<value hidden: it holds a password>")
        if error.validator == "additionalProperties":
            message = message.replace("Additional properties are not allowed", "unknown key")
        refusal = error.schema.get(REFUSAL) if isinstance(error.schema, dict) else None
        if refusal and error.validator in ("pattern", "not", "enum"):
            message = f"{error.instance!r} {refusal}"
        found.append(Problem(_key_path(error.absolute_path), message))
    return found
