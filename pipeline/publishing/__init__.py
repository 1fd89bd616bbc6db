"""Making a release: inputs, the stages (build, disk, compress, boot, sbom, push, index),
assembly, signing, tags, versions, the up-to-date check, outputs; release operations
(promote, prune). Never imports pipeline.consume or pipeline.cli.
"""
