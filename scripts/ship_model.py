"""Add a trained model (and its card) to the package's shipped models.

    .venv/bin/python scripts/ship_model.py OUT/models/lps.npz --name lps-duts3k

Copies MODEL.npz, MODEL.md and MODEL.card.json (written by ``python -m pipeline train``) into
``pipeline/shipped_models/`` as NAME.npz / NAME.md / NAME.card.json and adds or replaces the
manifest entry (name, stage from the model's meta, sha256, bytes, card).
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline import models  # noqa: E402
from pipeline.cache import file_digest  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", type=Path, help="model file written by `python -m pipeline train`")
    ap.add_argument("--name", required=True, help="the shipped name (what `STAGE.model=NAME` will say)")
    args = ap.parse_args(argv)
    meta = models.read_meta(args.model)
    card_md = args.model.with_suffix(".md")
    card_json = args.model.with_suffix(".card.json")
    for f in (card_md, card_json):
        if not f.is_file():
            ap.error(f"{f} is missing: ship a model with the card `pipeline train` wrote")
    folder = models.SHIPPED_DIR
    target = folder / f"{args.name}.npz"
    shutil.copyfile(args.model, target)
    shutil.copyfile(card_md, folder / f"{args.name}.md")
    shutil.copyfile(card_json, folder / f"{args.name}.card.json")
    entries = {n: e for n, e in models.shipped_models().items() if e.path.parent == folder}
    entries[args.name] = models.ShippedModel(args.name, meta["stage"], target, file_digest(target),
                                             target.stat().st_size, folder / f"{args.name}.md")
    models.write_manifest(folder, list(entries.values()))
    print(f"shipped {args.name} ({meta['stage']}, {target.stat().st_size} bytes) in {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
