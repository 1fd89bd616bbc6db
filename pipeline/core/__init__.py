"""Plumbing that knows nothing of releases: errors, digests, files, progress, architectures,
media types, commands, locks, zstd, references, the settings table. Imports nothing else of
the pipeline.
"""
