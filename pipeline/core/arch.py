"""Architectures and their names in each ecosystem (OCI/Go, Linux uname, Lima)."""

from __future__ import annotations

import enum

from pipeline.core.errors import UsageError


class Arch(enum.StrEnum):
    AMD64 = "amd64"
    ARM64 = "arm64"

    @property
    def uname(self) -> str:
        """The kernel's name, as `uname -m` prints it (and bib's --target-arch takes)."""
        return {Arch.AMD64: "x86_64", Arch.ARM64: "aarch64"}[self]

    @property
    def lima(self) -> str:
        """Lima's template name for the architecture (never amd64/arm64)."""
        return self.uname

    @property
    def platform(self) -> str:
        """The OCI/Docker platform string."""
        return f"linux/{self.value}"

    @property
    def qemu_binfmt(self) -> str:
        """The binfmt_misc entry qemu-user-static registers for running this arch's binaries."""
        return {Arch.AMD64: "qemu-x86_64", Arch.ARM64: "qemu-aarch64"}[self]

    @classmethod
    def parse(cls, name: str) -> Arch:
        """Accept OCI names and the kernel's aliases; reject others naming the valid ones."""
        aliases = {"x86_64": cls.AMD64, "aarch64": cls.ARM64}
        key = name.strip().lower()
        if key in aliases:
            return aliases[key]
        try:
            return cls(key)
        except ValueError:
            choices = ", ".join(a.value for a in cls)
            raise UsageError(f"unknown architecture {name!r}: expected one of {choices}") from None

    @classmethod
    def parse_list(cls, text: str) -> list[Arch]:
        """Parse a comma-separated list (`ARCH=arm64,amd64`), keeping order and dropping repeats."""
        archs: list[Arch] = []
        for part in text.split(","):
            if not part.strip():
                raise UsageError(f"empty architecture in list {text!r}")
            arch = cls.parse(part)
            if arch not in archs:
                archs.append(arch)
        return archs

    @classmethod
    def host(cls) -> Arch:
        import platform

        return cls.parse(platform.machine())
