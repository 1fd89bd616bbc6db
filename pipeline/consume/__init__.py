"""Consuming a release: pull, lima (and its limactl URL plugin), validate, boot REF.
Never imports pipeline.publishing or pipeline.cli.
"""
