"""Stand-ins for what the tests cannot pull: fake bootc bases and bootc-image-builder."""
