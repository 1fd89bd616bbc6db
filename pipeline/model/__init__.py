"""The release, modelled: the manifest, the plan of a release and what it publishes, results,
provenance, Lima settings, the builders' contracts, the JSON Schemas. Pure (local files at
most, no registry, engine or VM); imports only pipeline.core.
"""
