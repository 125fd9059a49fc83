"""The configuration examples in the docs are valid configuration (they cannot drift)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from heshi.config import HeshiConfig

ROOT = Path(__file__).parents[1]
DOCS = [*sorted((ROOT / "docs").glob("*.md")), ROOT / "README.md"]
BLOCKS = [
    pytest.param(block, id=f"{path.name}#{i}")
    for path in DOCS
    for i, block in enumerate(re.findall(r"```yaml\n(.*?)```", path.read_text("utf-8"), re.S))
]


def test_the_docs_have_configuration_examples() -> None:
    assert len(BLOCKS) >= 6


@pytest.mark.parametrize("block", BLOCKS)
def test_each_yaml_example_is_a_valid_heshi_yaml(block: str) -> None:
    data = yaml.safe_load(block)
    assert isinstance(data, dict)
    HeshiConfig.model_validate(data)
