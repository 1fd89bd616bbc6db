"""Registry transport: the only code that talks HTTP to an OCI registry.

`client.RegistryClient` is the entry point; the other modules hold its parts (each host's access
profile: credentials, trust, plain HTTP; retry policy, auth, uploads, redaction) so each can be
read and tested on its own.
"""

from pipeline.core.mediatypes import OCI_INDEX, OCI_MANIFEST
from pipeline.registry.client import (
    BlobAction,
    BlobPushResult,
    FetchedManifest,
    RegistryClient,
)
from pipeline.registry.journal import UploadJournal
from pipeline.registry.retry import RetryPolicy, Timeouts

__all__ = [
    "OCI_INDEX",
    "OCI_MANIFEST",
    "BlobAction",
    "BlobPushResult",
    "FetchedManifest",
    "RegistryClient",
    "RetryPolicy",
    "Timeouts",
    "UploadJournal",
]
