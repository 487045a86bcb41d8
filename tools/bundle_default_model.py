"""Copy a trained run into the package as the default weights, with its model card.

    python tools/bundle_default_model.py runs/x4 --evaluation docs/eval_bicubic.md docs/eval_blur.md

Writes perceptual_sr/pretrained/perceptual-sr-x4/{config.json, model.safetensors, README.md}, which
`PerceptualSR.from_pretrained()` loads offline.
"""

import argparse
import json
import shutil
import sys
from pathlib import Path

from perceptual_sr.model import DEFAULT_WEIGHTS_DIR, PerceptualSR


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path, help="a train.py --output-dir (holds config.json, model.safetensors)")
    parser.add_argument("--evaluation", type=Path, nargs="*", default=[], help="Markdown files for the card")
    args = parser.parse_args()
    try:
        model = PerceptualSR.from_pretrained(args.run_dir)
        train_config = json.loads((args.run_dir / "train_config.json").read_text())
        manifest_path = Path(train_config["data"]) / "manifest.json"
        manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
        evaluation = "\n\n".join(path.read_text() for path in args.evaluation) or None
    except (FileNotFoundError, ValueError, KeyError) as error:
        sys.exit(f"error: {error}")
    data = {key: manifest.get(key) for key in ("scale", "hr_size", "degradation", "counts", "images", "seed")}
    notes = ("## Provenance\n\nTrained by `train.py` in this repository on 1,000 ImageNet photos "
             "(ILSVRC-2012, one per class; 884 usable); see `docs/training.md` for every command and "
             "the pilot. ImageNet images are for non-commercial research use.")
    shutil.rmtree(DEFAULT_WEIGHTS_DIR, ignore_errors=True)
    model.save_pretrained(DEFAULT_WEIGHTS_DIR, model_card_kwargs={
        "training": {"train_config": train_config, "data": data}, "evaluation": evaluation, "notes": notes})
    for path in sorted(DEFAULT_WEIGHTS_DIR.iterdir()):
        print(f"wrote {path} ({path.stat().st_size / 1e3:.0f} kB)")


if __name__ == "__main__":
    main()
