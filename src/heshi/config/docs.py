"""The ``docs`` section of ``heshi.yaml``: document extraction over HTTP
(``POST /v1/docs/extract``, docs/docs.md). Defaults live here, with their reasons."""

from __future__ import annotations

from pydantic import Field

from heshi.config.base import Strict


class DocsConfig(Strict):
    """Uploads to ``/v1/docs/extract``."""

    # The whole multipart body, counted while it arrives (chunked too): a scanned contract
    # of a few dozen pages fits; more is refused before it costs memory. Separate from
    # server.max_body_bytes, which bounds JSON bodies.
    max_upload_bytes: int = Field(default=32 * 1024 * 1024, gt=0)
    # Uploads read (parsed, OCR'd) at once, on threads of their own; four times as many may
    # wait, more are refused with 503. OCR takes every core it is given: on a CPU box with the
    # embedded engine, more than two only slows generation down.
    max_concurrent_reads: int = Field(default=2, gt=0, le=64)
