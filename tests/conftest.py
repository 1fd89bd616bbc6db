"""Shared test fixtures: real services (Podman, docker-registry) live in tests/support/."""

pytest_plugins = [
    "tests.support.podman",
    "tests.support.images",
    "tests.support.bootable",
    "tests.support.registry",
    "tests.support.docker",
    "tests.support.trust",
]
