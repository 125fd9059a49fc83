"""What every section of ``heshi.yaml`` shares: strict models, model names."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/@+-]{0,127}$")


def _model_name(v: str) -> str:
    if not _NAME_RE.match(v):
        raise ValueError(f"invalid model name {v!r}")
    return v


# A public model name: what clients put in "model"
ModelName = Annotated[str, AfterValidator(_model_name)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
