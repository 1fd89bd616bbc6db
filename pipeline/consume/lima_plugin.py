"""`limactl-url-oras`: Lima's URL-handler plugin, so that `limactl start oras:REF` starts a release.

Lima >= 2.0 runs `limactl-url-SCHEME REST` for a template locator `SCHEME:REST` whose scheme it does
not know (found beside limactl, on PATH, or in PREFIX/libexec/lima) and reads from its stdout a URL
or the path of a local template (lima-vm/lima v2.2.0 pkg/limatmpl/locator.go, transformCustomURL;
website/content/en/docs/config/plugin/url.md). A non-zero exit is an error that shows our stderr.

This is a thin adapter over `bootc-pipeline lima REF` (consume/lima.py): the same resolution,
verified cache and template writer; only the template's place and the locator's spelling are its
own. stdout carries the template's path and nothing else; progress and the error go to stderr.

Lima passes only REST, so the settings `lima REF` takes as flags come from the environment:
`BOOTC_PIPELINE_PLAIN_HTTP=1` (plain HTTP, to a loopback registry only, as `--plain-http`) and
`BOOTC_PIPELINE_CA_BUNDLE=FILE` (as `--ca-bundle`), `BOOTC_PIPELINE_PLATFORMS=linux/arm64|all`
(as `--platform`; the default is the host's architecture, the one Lima boots without `--arch`).
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path

from pipeline.consume import lima
from pipeline.core.errors import EXIT_FAILURE, EXIT_USAGE, PipelineError, UsageError
from pipeline.core.progress import Reporter
from pipeline.core.reference import Reference, parse_reference
from pipeline.shared.context import Options

PROG = "limactl-url-oras"
PLAIN_HTTP_ENV = "BOOTC_PIPELINE_PLAIN_HTTP"
CA_BUNDLE_ENV = "BOOTC_PIPELINE_CA_BUNDLE"
PLATFORMS_ENV = "BOOTC_PIPELINE_PLATFORMS"
_SEPARATORS = re.compile(r"[^A-Za-z0-9]{2,}")  # a repository allows `__`; Lima one at a time


def reference_text(rest: str) -> str:
    """The reference in Lima's REST: `REGISTRY/REPO:TAG|@DIGEST`, also behind `//` (`oras://`)."""
    text = rest.removeprefix("//")
    if not text:
        raise UsageError(
            "no reference given (oras:REGISTRY/REPO:TAG or oras:REGISTRY/REPO@sha256:...)"
        )
    return text


def instance_name(ref: Reference) -> str:
    """Lima names the instance after the template file (locator.go InstNameFromYAMLPath): the
    repository's last component, made a Lima identifier (alphanumerics joined by single . _ -)."""
    last = ref.repository.rsplit("/", 1)[-1]
    return _SEPARATORS.sub("-", last)[:76].strip("._-") or "bootc"


def template_path(ref: Reference) -> Path:
    """One template per reference: `CACHE/templates/<sha256 of the reference>/<instance>.yaml`."""
    key = hashlib.sha256(str(ref).encode()).hexdigest()[:16]
    return lima.cache_dir() / "templates" / key / f"{instance_name(ref)}.yaml"


def _flag(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


def options_from_env(env: dict[str, str]) -> Options:
    bundle = env.get(CA_BUNDLE_ENV) or None
    return Options(
        plain_http=_flag(env.get(PLAIN_HTTP_ENV)), ca_bundle=Path(bundle) if bundle else None
    )


def run(rest: str, env: dict[str, str], reporter: Reporter) -> Path:
    text = reference_text(rest)
    ref = parse_reference(text)
    made = lima.make_template(
        text,
        platforms=env.get(PLATFORMS_ENV) or None,
        template=template_path(ref),
        options=options_from_env(env),
        reporter=reporter,
    )
    return made.template


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print(
            f"{PROG}: error: expected one argument, REGISTRY/REPO:TAG (got {len(args)})",
            file=sys.stderr,
        )
        return EXIT_USAGE
    try:
        path = run(args[0], dict(os.environ), Reporter(stream=sys.stderr, live=False))
    except PipelineError as exc:
        hint = f" ({exc.hint})" if exc.hint else ""
        print(f"{PROG}: error: {args[0]}: {exc.message}{hint}", file=sys.stderr)
        return exc.exit_code
    except Exception as exc:  # a bug: still one line, naming the reference
        text = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
        print(f"{PROG}: internal error: {args[0]}: {type(exc).__name__}: {text}", file=sys.stderr)
        return EXIT_FAILURE
    print(path, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
