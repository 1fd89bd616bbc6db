"""The image-builder stand-in (its entrypoint is a script; the disk writer is bib's stand-in's)."""
