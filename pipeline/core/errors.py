"""The one exception type for failures a user can act on, and the exit codes the CLI maps it to."""

from __future__ import annotations

EXIT_FAILURE = 1  # the job failed (engine, builder, registry)
EXIT_USAGE = 2  # bad input: manifest, option, reference
EXIT_TAG_RACE = 3  # another publisher took a release tag while this run was publishing


class PipelineError(Exception):
    """A failure reported to the user as one line (plus an optional hint), never a traceback.

    Messages must never contain secrets: callers build them from names, paths and statuses only.
    """

    exit_code = EXIT_FAILURE

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class UsageError(PipelineError):
    """Bad input from the user (manifest, option, reference): exit status 2, nothing was done."""

    exit_code = EXIT_USAGE


class TagRaceError(PipelineError):
    """A release tag was taken by another publisher after this run began sending: its blobs,
    manifests and index are in the registry (complete, by digest), its tags follow the winner.
    Exit status 3, whichever check saw it first."""

    exit_code = EXIT_TAG_RACE
