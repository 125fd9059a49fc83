"""The small committed samples the OCR tests read: one generated invoice (the gold set's
``invoice-01`` at seed 7) as a scanned PDF and as a phone photo, with its gold fields and
its printed text.

    .venv/bin/python benchmarks/make_samples.py [DIR] [--seed 7]

writes, into DIR (default ``tests/apps/samples``):

* ``invoice-scan.pdf`` — the gold set's scan of the invoice (200 dpi, JPEG quality 60,
  image only: the same bytes as ``docs_gold.py``'s ``scan/invoice-01.pdf``);
* ``invoice-photo.png`` — its phone photo (the gold set's geometry and light, 1125×1500),
  reduced to a 64-colour palette to stay small;
* ``invoice-samples.json`` — ``fields`` (the gold values), ``lines`` (the printed lines
  in order, the table left out) and ``table`` (its rows of cells).

Each file stays under 200 KB. Run again after changing the generator or the renderers
and commit what changed.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from PIL import Image  # noqa: E402

from docs_gold import generate, looks, render  # noqa: E402

DEFAULT = HERE.parent / "tests" / "apps" / "samples"
LIMIT = 200_000


def sample(seed: int = 7) -> tuple[dict[str, Any], list[str], list[list[str]]]:
    """The invoice: ``invoice-01`` of ``docs_gold.py --seed SEED``."""
    doc = next(d for d in generate(seed, 1) if d[0] == "invoice-01")
    return doc[2], doc[3], doc[4]


def described(seed: int = 7) -> dict[str, Any]:
    fields, lines, table = sample(seed)
    return {
        "seed": seed, "id": "invoice-01", "type": "invoice", "fields": fields,
        "lines": [line for line in lines if line != "\0"], "table": table,
        "files": {"scan": "invoice-scan.pdf", "photo": "invoice-photo.png"},
    }  # fmt: skip


def write(out: Path, seed: int = 7) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    _, lines, table = sample(seed)
    with tempfile.TemporaryDirectory() as tmp:
        drawn = Path(tmp)
        render(drawn, "invoice-01", lines, table, ["scan", "photo"], looks(seed, "invoice-01"))
        paths = [out / "invoice-scan.pdf", out / "invoice-photo.png", out / "invoice-samples.json"]
        shutil.copyfile(drawn / "scan" / "invoice-01.pdf", paths[0])
        with Image.open(drawn / "photo" / "invoice-01.png") as image:
            small = image.quantize(64, Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
        small.save(paths[1], "PNG", optimize=True)
    paths[2].write_text(json.dumps(described(seed), ensure_ascii=False, indent=1) + "\n", "utf-8")
    for path in paths:
        if path.stat().st_size > LIMIT:
            raise SystemExit(f"{path}: {path.stat().st_size} bytes, more than {LIMIT}")
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("out", type=Path, nargs="?", default=DEFAULT)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    for path in write(args.out, args.seed):
        print(f"{path.stat().st_size:>8} {path}")


if __name__ == "__main__":
    main()
