"""The bootc-image-builder stand-in (its entrypoint is a standalone script)."""
