"""The I/O that making and consuming a release share: a command's Options and Context, the
container engine, the work directory and its stamps, a release read back from a registry.
"""
