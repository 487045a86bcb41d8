"""Copy trained weights into the package as the default x4 model, with its pixel-loss twin and card.

    python tools/bundle_default_model.py RUN_DIR --twin TWIN_DIR --evaluation docs/eval/bicubic_luma.md
    python tools/bundle_default_model.py --add-real-photo PHOTO_RUN_DIR --real-photo-twin PHOTO_TWIN_DIR
    python tools/bundle_default_model.py --replace-pair RUN_DIR --twin TWIN_DIR --evaluation docs/eval/bicubic_luma.md
    python tools/bundle_default_model.py --add-cleanup CLEANUP_DIR --cleanup-runs RUN... [--retire-real-photo]

The fourth form adds the cleanup network (a folder `CleanupNet.save_pretrained` wrote) as
cleanup/, with the settings of the `train_cleanup.py` runs that trained it (oldest first) on the
card; --retire-real-photo removes the real-photo pair, whose `cleanup` axis the network then gives
alone.

The third form replaces the default and its pixel twin in the bundle as it is (the real-photo pair
and the card's record stay), with a paragraph on the new runs and the new evaluation on the card.
The second form adds the real-photo pair (the `cleanup` axis) to the bundled model as it is:
real-photo/ and real-photo-pixel-twin/, and a paragraph with their training settings on the card.

RUN_DIR and TWIN_DIR are folders written by save_pretrained (a train.py --output-dir, or its
checkpoint/ema). Writes perceptual_sr/pretrained/perceptual-sr-x4/{config.json, model.safetensors,
README.md} and pixel-twin/{config.json, model.safetensors}, which `PerceptualSR.from_pretrained()`
loads offline. The card's training section lists each run's recorded settings (relative paths only).
"""

import argparse
import csv
import json
import shutil
import sys
from pathlib import Path

from perceptual_sr.hub.weights import DEFAULT_WEIGHTS_DIR
from perceptual_sr.inference.pipeline import REAL_PHOTO_SUBFOLDER, TWIN_SUBFOLDER, SRPipeline, load_weight_sets
from perceptual_sr.networks.upscaler import PerceptualSR
from perceptual_sr.utils.atomic_write import write_text

NOTES = """## Provenance

Trained by `train.py` in this repository on 884 ImageNet photos (ILSVRC-2012, one per class, those at
least 288 px on the shorter side), on one GPU: a 255,200-sample run of the recipe chosen by the
ablation, then a fine-tune with the grid penalty (`--grid-weight 15000`). The pixel-loss twin in
`pixel-twin/` is that model fine-tuned on pixel MSE alone (8,000 samples, on CPU), so the two can be
blended (`detail`). `docs/training.md` in the repository lists every command, the ablation and the
measurements. ImageNet images are for non-commercial research use."""


REAL_PHOTO_NOTES = """## Real-photo weights (`cleanup`)

`real-photo/` is the default fine-tuned on photos degraded on the fly by the `photo` preset of
`perceptual_sr/data/degradations.py` (blur, resize, noise and JPEG, Real-ESRGAN's second-order model
with milder ranges), with the default's loss (VGG-16 relu2_2, pixel 10, TV 1e-5, grid 15,000);
`real-photo-pixel-twin/` is the pixel-loss twin fine-tuned the same way on pixel MSE. The four
weight sets are blended bilinearly along `detail` and `cleanup`; `cleanup="auto"` picks the
strength from the input's JPEG quality and noise. Trained on 2 CPU cores (bf16, AMX) on ImageNet
and BSDS500 photos (BSDS500: Arbelaez et al., TPAMI 2011, research use). Settings of the runs:"""


HATCH_NOTES = """## Without the cross-hatch (`--hatch-weight`)

The default and `pixel-twin/` were fine-tuned once more on 2 CPU cores (fp32, AMD EPYC) on 1,155
ImageNet and BSDS500 photos, with a penalty on output power the target lacks at any frequency
(`--hatch-weight`, `loss.spectral_excess`): the earlier default painted a diagonal screen-door
cross-hatch near (0.40, +-0.40) cycles/px on skin, fur and flat areas (`docs/training.md`,
"Stage 6"). Settings of the runs:"""


CLEANUP_NOTES = """## The cleanup network (`cleanup/`)

`cleanup/` cleans the colour of the input at its own resolution before the upscaler runs, as
strongly as `cleanup` says (0 skips it; "auto" reads the file's JPEG tables and noise). A JPEG keeps
a quarter of the colour (4:2:0) and quantizes it coarsely, and the colour fix takes the output's
colour from the input: given the clean colour, the default's LPIPS on Set5 JPEG 75 goes from 0.59x
to 0.435x bicubic's. The network changes colour only (its correction's luma is removed, so the
input's luma reaches the upscaler exactly: every cleanup that also changed the luma made LPIPS
worse there), and only where the input has colour within 4 pixels, so a black-and-white photo
stays black and white. A stack of 3x3 convolutions with PReLU, mostly at half resolution
(receptive field about 50 input pixels, six JPEG blocks), with the strength as an input channel
and as the scale of its correction. Trained by `train_cleanup.py` on 2 CPU cores (fp32, AMD EPYC)
on 1,148 ImageNet and BSDS500 photos degraded on the fly by the `upload` preset of
`perceptual_sr/data/degradations.py`, as a network that corrects all three channels, in the runs
below: a Charbonnier loss to the clean low-resolution image, then through the frozen default
upscaler with its own perceptual loss, then (its last up-convolution turned into a bilinear resize
and a conv, `tools/cleanup_redesign.py`) with an adversarial term at low resolution, selected by
LPIPS on Set5; its correction was then restricted to colour (`tools/cleanup_redesign.py --corrects
chroma`), as bundled: of the runs' colour-only versions, the best on Set5 and held-out training
crops (`docs/training.md`, stage 7). Settings of the runs:"""


# The GPU machine read copies of these folders under other names; the card names the originals.
RENAMED_PATHS = {".gpu/Set5": "../shared/data/benchmarks/Set5", ".gpu/init": "runs/x4"}


def _portable(value: str) -> str:
    """A recorded path as the card shows it: renamed copies restored, and absolute paths cut to
    their `runs/...` or `data/...` part, so no machine's folder layout reaches the Hub."""
    value = RENAMED_PATHS.get(value, value)
    parts = Path(value).parts
    if Path(value).is_absolute():
        anchors = [k for k, part in enumerate(parts) if part in ("runs", "data")]
        return "/".join(parts[anchors[0]:]) if anchors else Path(value).name
    return value


def _run_settings(folder: Path) -> dict | None:
    """The train_config.json of the run that wrote `folder` (the folder itself or two levels up)."""
    for candidate in (folder, folder.parent, folder.parent.parent):
        path = candidate / "train_config.json"
        if path.is_file():
            settings = json.loads(path.read_text())
            return {key: _portable(value) if isinstance(value, str) else value for key, value in settings.items()}
    return None


def _mean_scores(csv_path: Path) -> list[dict]:
    """The model's mean scores per set from a `perceptual-sr eval` results.csv, for the card's model-index."""
    if not csv_path.is_file():
        return []
    with csv_path.open(newline="") as handle:
        rows = [row for row in csv.DictReader(handle) if row["image"] == "mean"]
    return [{"dataset": row["dataset"], "metric": metric, "value": float(row[f"model_{metric}"])}
            for row in rows for metric in ("psnr", "ssim", "lpips", "grid")]


def add_real_photo_pair(photo_dir: Path, photo_twin_dir: Path) -> None:
    """Add the real-photo weights and their twin to the bundled model, which keeps its card."""
    try:
        pipeline = SRPipeline.from_pretrained(DEFAULT_WEIGHTS_DIR)
        pair = {REAL_PHOTO_SUBFOLDER: PerceptualSR.from_pretrained(photo_dir),
                "real-photo-pixel-twin": PerceptualSR.from_pretrained(photo_twin_dir)}
    except (FileNotFoundError, ValueError) as error:
        sys.exit(f"error: {error}")
    for name, network in pair.items():
        if network.config != pipeline.config:
            sys.exit(f"error: {name} is a {network.config}, the bundled model a {pipeline.config}")
        shutil.rmtree(DEFAULT_WEIGHTS_DIR / name, ignore_errors=True)
        network.save_pretrained(DEFAULT_WEIGHTS_DIR / name)
        (DEFAULT_WEIGHTS_DIR / name / "README.md").unlink()  # one card, the parent's
    settings = {"real_photo": _run_settings(photo_dir), "real_photo_pixel_twin": _run_settings(photo_twin_dir)}
    card = DEFAULT_WEIGHTS_DIR / "README.md"
    write_text(card, card.read_text().rstrip() + "\n\n" + REAL_PHOTO_NOTES + "\n\n```json\n"
               + json.dumps(settings, indent=1) + "\n```\n")
    for path in sorted(DEFAULT_WEIGHTS_DIR.rglob("*")):
        if path.is_file():
            print(f"wrote {path} ({path.stat().st_size / 1e3:.0f} kB)")


def replace_default_pair(run_dir: Path, twin_dir: Path, evaluation_files: list[Path]) -> None:
    """Swap the bundle's default and pixel twin for new weights; the real-photo pair and the card's
    record stay, the evaluation is the new one."""
    try:
        pipeline = SRPipeline.from_pretrained(DEFAULT_WEIGHTS_DIR)
        sets = load_weight_sets(DEFAULT_WEIGHTS_DIR)
        sets[""], sets[TWIN_SUBFOLDER] = PerceptualSR.from_pretrained(run_dir), PerceptualSR.from_pretrained(twin_dir)
        replaced = SRPipeline(sets)
    except (FileNotFoundError, ValueError) as error:
        sys.exit(f"error: {error}")
    replaced.card_record = dict(pipeline.card_record)
    settings = {"default": _run_settings(run_dir), "pixel_twin": _run_settings(twin_dir)}
    notes = replaced.card_record.get("notes", "")
    if HATCH_NOTES.splitlines()[0] not in notes:
        notes = (notes + "\n\n" if notes else "") + HATCH_NOTES + "\n\n```json\n" + json.dumps(settings, indent=1) + "\n```"
    evaluation = "\n\n".join(path.read_text() for path in evaluation_files) or None
    scores = [score for path in evaluation_files for score in _mean_scores(path.with_suffix(".csv"))]
    replaced.save_pretrained(DEFAULT_WEIGHTS_DIR, notes=notes, evaluation=evaluation, scores=scores,
                             degradation="bicubic")
    for path in sorted(DEFAULT_WEIGHTS_DIR.rglob("*")):
        if path.is_file():
            print(f"wrote {path} ({path.stat().st_size / 1e3:.0f} kB)")


def _without_section(notes: str, heading: str) -> str:
    """`notes` less the section under `heading`: its text and the JSON block of settings that ends it."""
    if heading not in notes:
        return notes
    start = notes.index(heading)
    block = notes.index("```json", start) + len("```json")
    end = notes.index("\n```", block) + len("\n```")
    return (notes[:start] + notes[end:]).strip()


def add_cleanup(cleanup_dir: Path, runs: list[Path], retire_real_photo: bool) -> None:
    """Add the cleanup network to the bundled model, with the settings of the `runs` that trained it
    on the card (and, asked to, retire the real-photo pair)."""
    from perceptual_sr.networks.restorer import CleanupNet

    try:
        pipeline = SRPipeline.from_pretrained(DEFAULT_WEIGHTS_DIR)
        sets = load_weight_sets(DEFAULT_WEIGHTS_DIR)
        cleanup = CleanupNet.from_pretrained(cleanup_dir)
    except (FileNotFoundError, ValueError) as error:
        sys.exit(f"error: {error}")
    settings = []
    for run in runs:
        recorded = _run_settings(run)
        if recorded is None:
            sys.exit(f"error: {run} holds no train_config.json (name the train_cleanup.py runs)")
        # The runs were started from a copy of the code beside their folders in ../runs: their
        # recorded paths are relative to it, so they are shown as ../runs/<name>.
        for key in ("data", "output_dir", "init_from"):
            if recorded.get(key):
                recorded[key] = f"../runs/{Path(recorded[key]).name}"
        settings.append(recorded)
    if retire_real_photo:
        sets = {name: network for name, network in sets.items() if not name.startswith(REAL_PHOTO_SUBFOLDER)}
    bundled = SRPipeline(sets, cleanup)
    bundled.card_record = dict(pipeline.card_record)
    notes = bundled.card_record.get("notes", "")
    if retire_real_photo:  # the pair is gone: so is its paragraph
        notes = _without_section(notes, REAL_PHOTO_NOTES.splitlines()[0])
    notes = _without_section(notes, CLEANUP_NOTES.splitlines()[0])  # a new cleanup network replaces the old one's
    notes += "\n\n" + CLEANUP_NOTES + "\n\n```json\n" + json.dumps(settings, indent=1) + "\n```"
    bundled.save_pretrained(DEFAULT_WEIGHTS_DIR, notes=notes)
    for path in sorted(DEFAULT_WEIGHTS_DIR.rglob("*")):
        if path.is_file():
            print(f"wrote {path} ({path.stat().st_size / 1e3:.0f} kB)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path, nargs="?", help="weights of the default (feature-loss) model")
    parser.add_argument("--twin", type=Path, help="weights of its pixel-loss twin")
    parser.add_argument("--evaluation", type=Path, nargs="*", default=[], help="Markdown files for the card")
    parser.add_argument("--add-real-photo", type=Path, help="weights of the real-photo model, added to the bundle")
    parser.add_argument("--real-photo-twin", type=Path, help="weights of its pixel-loss twin")
    parser.add_argument("--replace-pair", type=Path, help="new default weights, replacing the bundled default and "
                                                          "(with --twin) its twin")
    parser.add_argument("--add-cleanup", type=Path, help="a saved cleanup network, added to the bundle")
    parser.add_argument("--cleanup-runs", type=Path, nargs="+", default=[],
                        help="with --add-cleanup: the train_cleanup.py run folders that trained it, oldest first")
    parser.add_argument("--retire-real-photo", action="store_true", help="with --add-cleanup: drop the real-photo pair")
    args = parser.parse_args()
    if args.add_cleanup:
        if not args.cleanup_runs:
            parser.error("--add-cleanup needs --cleanup-runs: the card lists how the network was trained")
        add_cleanup(args.add_cleanup, args.cleanup_runs, args.retire_real_photo)
        return
    if args.replace_pair:
        if not args.twin or args.run_dir:
            parser.error("--replace-pair takes --twin, without RUN_DIR")
        replace_default_pair(args.replace_pair, args.twin, args.evaluation)
        return
    if args.add_real_photo or args.real_photo_twin:
        if not (args.add_real_photo and args.real_photo_twin) or args.run_dir:
            parser.error("--add-real-photo and --real-photo-twin go together, without RUN_DIR")
        add_real_photo_pair(args.add_real_photo, args.real_photo_twin)
        return
    if not (args.run_dir and args.twin):
        parser.error("RUN_DIR and --twin are required")
    try:
        pipeline = SRPipeline({"": PerceptualSR.from_pretrained(args.run_dir),
                               TWIN_SUBFOLDER: PerceptualSR.from_pretrained(args.twin)})  # one architecture
        evaluation = "\n\n".join(path.read_text() for path in args.evaluation) or None
        scores = [score for path in args.evaluation for score in _mean_scores(path.with_suffix(".csv"))]
    except (FileNotFoundError, ValueError) as error:
        sys.exit(f"error: {error}")
    training = {"default": _run_settings(args.run_dir), "pixel_twin": _run_settings(args.twin)}
    shutil.rmtree(DEFAULT_WEIGHTS_DIR, ignore_errors=True)
    pipeline.save_pretrained(DEFAULT_WEIGHTS_DIR, training=training, evaluation=evaluation, notes=NOTES, scores=scores,
                             degradation="bicubic")  # the shipped data: prepare_data.py --degradation bicubic
    for path in sorted(DEFAULT_WEIGHTS_DIR.rglob("*")):
        if path.is_file():
            print(f"wrote {path} ({path.stat().st_size / 1e3:.0f} kB)")


if __name__ == "__main__":
    main()
