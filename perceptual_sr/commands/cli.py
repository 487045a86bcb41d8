"""The `perceptual-sr` command: `upscale` photos, `eval` on benchmark folders, `export` to ONNX,
and `train`, `prepare` and `demo`, which run the same code as train.py, prepare_data.py and app.py.
`python -m perceptual_sr` is the same command."""

from __future__ import annotations

import argparse
import functools
import sys
import time
from pathlib import Path

from PIL import Image
from tqdm.auto import tqdm

from perceptual_sr import __version__
from perceptual_sr.commands.video_job import upscale_clip_file
from perceptual_sr.data.degradations import DEGRADATIONS
from perceptual_sr.inference.image_pipeline import ImagePipeline, check_axis_value
from perceptual_sr.inference.pipeline import SRPipeline
from perceptual_sr.inference.upscale import (
    COLOR_FIXES,
    DEFAULT_COLOR_FIX,
    DEFAULT_TILE_OVERLAP,
)
from perceptual_sr.utils.atomic_write import clear_stale_staging
from perceptual_sr.utils.image_io import (
    DEFAULT_MAX_PIXELS,
    IMAGE_SUFFIXES,
    check_fits_format,
    check_image_file,
    check_outscale,
    header_size,
    is_complete_image,
    save_image,
)
from perceptual_sr.utils.interrupts import sigterm_as_interrupt
from perceptual_sr.utils.runtime import choose_device, reuse_freed_memory
from perceptual_sr.video.clip import (
    DEFAULT_CODEC,
    DEFAULT_CRF,
    VIDEO_SUFFIXES,
    is_clip,
    is_complete_clip,
    video_output_path,
)

FORMATS = {"png": ".png", "jpeg": ".jpg", "jpg": ".jpg", "webp": ".webp", "tiff": ".tif"}


def _color_fix(value: str) -> str | None:
    return None if value == "none" else value


def _run_train(argv: list[str]) -> int:
    from perceptual_sr.commands.train import main as train_main

    return train_main(argv)


def _run_train_cleanup(argv: list[str]) -> int:
    from perceptual_sr.commands.train_cleanup import main as train_cleanup_main

    return train_cleanup_main(argv)


def _run_prepare(argv: list[str]) -> int:
    from perceptual_sr.commands.prepare import main as prepare_main

    return prepare_main(argv)


def _run_demo(argv: list[str]) -> int:
    if argv and argv[0] in ("-h", "--help"):
        from perceptual_sr.app import serve
        print(serve.__doc__)
        return 0
    if argv:
        print(f"perceptual-sr demo: error: it takes no arguments (got {argv}); settings are environment variables, "
              "see `perceptual-sr demo --help`", file=sys.stderr)
        return 2
    from perceptual_sr.app.serve import main as serve_main

    serve_main()
    return 0


# The package extra each command needs beyond the core (for the message when one is missing).
EXTRAS = {"upscale": "export", "eval": "eval", "export": "export", "train": "train", "train-cleanup": "train",
          "prepare": "train", "demo": "app"}


def _missing_extra(command: str, error: ImportError) -> int:
    extra = "video" if "PyAV" in str(error) else EXTRAS[command]  # a clip among the inputs
    print(f"perceptual-sr {command}: error: {error}; install the extra: pip install 'perceptual-sr[{extra}]'",
          file=sys.stderr)
    return 2


# Commands with their own flags, handed the rest of the command line as it is.
PASS_THROUGH = {"train": (_run_train, "train a model (the flags of train.py)"),
                "train-cleanup": (_run_train_cleanup, "train the cleanup network (the flags of train_cleanup.py)"),
                "prepare": (_run_prepare, "build a training set (the flags of prepare_data.py)"),
                "demo": (_run_demo, "serve the web demo (as app.py)")}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="perceptual-sr", description=__doc__)
    parser.add_argument("--version", action="version", version=f"perceptual-sr {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    for name, (_, help_text) in PASS_THROUGH.items():
        commands.add_parser(name, help=help_text, add_help=False)

    up = commands.add_parser("upscale", help="upscale image files or folders")
    up.add_argument("inputs", nargs="+", type=Path, help="image files and/or folders of images")
    up.add_argument("-o", "--output", type=Path, required=True, help="output folder")
    up.add_argument("--format", choices=sorted(FORMATS), help="output format (default: the input's)")
    up.add_argument("--skip-existing", action="store_true", help="leave outputs that already exist alone")
    up.add_argument("--outscale", type=float, help="final scale, e.g. 2: the x4 result resized with Lanczos "
                                                   "(default: the model's scale)")
    up.add_argument("--suffix", help="added to output names: NAME_SUFFIX.ext (default: x4, or x<outscale>; "
                                     "cleaned with --restore-only)")
    up.add_argument("--restore-only", action="store_true",
                    help="run the model's cleanup network only, at the input's own size, without the upscaler (the "
                         "bundled one cleans a JPEG's colour and keeps its luma)")
    _add_model_options(up)
    up.add_argument("--color-fix", type=_color_fix, default=DEFAULT_COLOR_FIX,
                    choices=[c for c in COLOR_FIXES], metavar="{histogram,luma,none}",
                    help=f"colour fix (default {DEFAULT_COLOR_FIX})")
    up.add_argument("--tile-size", type=_whole_number(0), default=0,
                    help="tile side in input pixels; 0 (default) = chosen per device, as in the app")
    up.add_argument("--tile-overlap", type=_whole_number(0), default=DEFAULT_TILE_OVERLAP,
                    help="tile overlap in input pixels")
    up.add_argument("--max-pixels", type=_whole_number(1), default=DEFAULT_MAX_PIXELS,
                    help="largest input accepted (width x height; for a clip, per frame)")
    up.add_argument("--crf", type=_crf, default=DEFAULT_CRF,
                    help=f"clips: the encoder's quality, 0 (lossless) ... 51 (default {DEFAULT_CRF}: visually "
                         "lossless)")
    up.add_argument("--codec", default=DEFAULT_CODEC, help=f"clips: the video codec (default {DEFAULT_CODEC}: H.264)")

    ev = commands.add_parser("eval", help="PSNR-Y / SSIM-Y / LPIPS against bicubic on folders of HR images")
    ev.add_argument("--data", nargs="+", type=Path, required=True, help="folders of HR images (e.g. Set5 Set14 BSD68)")
    ev.add_argument("--degradation", choices=DEGRADATIONS, default="bicubic",
                    help="how the LR is made from each HR image (see degradations.degrade_to_image; default bicubic)")
    ev.add_argument("--max-images", type=_whole_number(1), default=None,
                    help="evaluate the first N images of each folder")
    ev.add_argument("--out", type=Path, default=Path("eval_results"), help="folder for results.md/.csv and comparisons")
    ev.add_argument("--color-fix", type=_color_fix, default=DEFAULT_COLOR_FIX, choices=[c for c in COLOR_FIXES],
                    metavar="{histogram,luma,none}",
                    help=f"colour fix applied to the model output (default {DEFAULT_COLOR_FIX}, as upscale)")
    _add_model_options(ev)
    # Scores in fp32 by default, so they do not depend on the CPU's bf16 support (the README's tables).
    ev.set_defaults(fast=False)
    ex = commands.add_parser("export", help="write the network as ONNX (dynamic batch, height and width)")
    ex.add_argument("output", type=Path, help="the .onnx file to write")
    ex.add_argument("--model", help="local folder or Hub repo id (default: the bundled weights)")
    ex.add_argument("--opset", type=int, default=17, help="ONNX opset version (default 17)")
    ex.add_argument("--detail", type=float, default=1.0, help="export the blend at this detail (default 1.0)")
    sp = commands.add_parser("deploy-space", help="publish the demo as a Hugging Face Space (app, package, examples)")
    sp.add_argument("space", help="the Space's id, e.g. you/perceptual-sr (created as a Gradio Space if needed)")
    sp.add_argument("--dry-run", action="store_true", help="list the files it would upload, and stop")
    sp.add_argument("--private", action="store_true", help="create the Space private")

    ev.add_argument("--sweep-detail", action="store_true",
                    help="evaluate detail 0, 0.25, 0.5, 0.75 and 1 and plot PSNR-Y against LPIPS")
    return parser


def _add_model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", help="local folder, Hub repo id or .onnx file (default: the bundled weights)")
    parser.add_argument("--device", help="cuda, mps or cpu (default: the best available)")
    parser.add_argument("--no-fast", dest="fast", action="store_false", help="plain fp32 (no bf16/channels_last)")
    parser.add_argument("--detail", type=float, default=1.0,
                        help="0.0 = fidelity (pixel-loss twin) ... 1.0 = detail (feature-loss model, default)")
    parser.add_argument("--cleanup", type=_cleanup_value, default="auto",
                        help="0.0 = as for clean inputs ... 1.0 = remove JPEG blocks, noise and blur; auto "
                             "(default) measures each image (its JPEG quality and noise)")


def _crf(text: str) -> int:
    value = _whole_number(0)(text)
    if value > 51:
        raise argparse.ArgumentTypeError(f"must be from 0 to 51, got {value}")
    return value


def _whole_number(minimum: int):
    """An argparse type: a whole number >= `minimum`, checked once at parse time (not per file)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number >= {minimum}, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected a whole number >= {minimum}, got {text!r}")
        return value

    parse.__name__ = "whole number"
    return parse


def _cleanup_value(text: str) -> float | str:
    """--cleanup's text as the pipeline takes it: "auto", or a number in the range it checks."""
    if text == "auto":
        return text
    try:
        return check_axis_value("cleanup", float(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected auto or a number from 0 to 1, got {text!r}") from None


def leave_out_own_outputs(files: list[Path], explicit: set[Path], output: Path, suffix: str,
                          format: str | None) -> list[Path]:
    """`files` without those found in a folder that are this command's own outputs of another
    input (`comic_x4.png` beside `comic.png`, from an earlier run into the same folder). With
    --skip-existing only: the same command run again then skips them, instead of refusing them
    as inputs it would overwrite or upscaling them into `comic_x4_x4.png`."""
    targets = {_file_identity(target) for target in output_paths(files, output, suffix, format, check=False)
               if target.exists()}
    kept = [path for path in files if path in explicit or _file_identity(path) not in targets]
    return kept or files


def collect_inputs(inputs: list[Path]) -> list[Path]:
    """Expand folders into their image and video files (sorted); files are kept as given."""
    files: list[Path] = []
    for path in inputs:
        if path.is_dir():
            files.extend(sorted(p for p in path.iterdir()
                                if p.is_file() and p.suffix.lower() in {*IMAGE_SUFFIXES, *VIDEO_SUFFIXES}))
        else:  # a pipe (/dev/stdin, <(...)) is refused here, before the output folder is made
            files.append(check_image_file(path, what="input"))
    if not files:
        raise ValueError("no input images found")
    return files


def output_paths(files: list[Path], output: Path, suffix: str, format: str | None, check: bool = True) -> list[Path]:
    """Where each input's result goes; ValueError if two inputs would write the same file or an
    input (unless `check` is False)."""
    targets = [video_output_path(path, output, suffix) if is_clip(path) else
               output / f"{path.stem}_{suffix}{FORMATS[format] if format else path.suffix.lower()}" for path in files]
    if not check:
        return targets
    sources: dict[Path, list[Path]] = {}
    for path, target in zip(files, targets):
        # Compared as macOS and Windows file systems do, without case: Photo.jpg and photo.jpg collide there.
        sources.setdefault(target.with_name(target.name.casefold()), []).append(path)
    clashes = {target: paths for target, paths in sources.items() if len(paths) > 1}
    if clashes:
        lines = "; ".join(f"{', '.join(map(str, paths))} -> {target.name} (names compared without case)"
                          for target, paths in clashes.items())
        raise ValueError(f"several inputs would be written to the same output file ({lines}); rename them, or "
                         "upscale them into separate --output folders")
    # An input is never written: not the file itself, nor another input the same run reads (a.png
    # -> a_x4.png in a folder that holds a_x4.png), through any name (links included).
    inputs = {_file_identity(path): path for path in files}
    overwritten = [(path, inputs[_file_identity(target)]) for path, target in zip(files, targets)
                   if target.exists() and _file_identity(target) in inputs]
    if overwritten:
        lines = "; ".join(f"{source} -> {victim}" for source, victim in overwritten)
        raise ValueError(f"the output would overwrite an input ({lines}); choose another --output folder or "
                         "--suffix. Nothing was written")
    return targets


def _check_output_fits(path: Path, target: Path, outscale: float) -> None:
    """ValueError, before the network runs, if the result cannot be stored in the target's format."""
    size = header_size(path)
    if size is None:
        return  # unreadable: open_image says so, in its words
    width, height = size
    check_fits_format(max(1, round(width * outscale)), max(1, round(height * outscale)),
                      Image.registered_extensions().get(target.suffix.lower(), ""))


def _file_identity(path: Path) -> tuple[int, int]:
    status = path.stat()
    return status.st_dev, status.st_ino


def run_upscale(args: argparse.Namespace, model: ImagePipeline) -> int:
    reuse_freed_memory()  # a third faster on CPU; this process exists to upscale
    files = collect_inputs(args.inputs)
    if args.restore_only:
        if args.outscale is not None:
            raise ValueError("--restore-only keeps the input's size; leave out --outscale")
        if not model.has_cleanup_network():
            raise ValueError("--restore-only needs a model with a cleanup network (a cleanup/ folder, as the bundled "
                             "default has, or a .cleanup.onnx file beside an exported model)")
    try:
        outscale = 1.0 if args.restore_only else model.scale if args.outscale is None else check_outscale(args.outscale)
    except ValueError as error:
        raise ValueError(f"--{error}") from None
    suffix = args.suffix if args.suffix is not None else "cleaned" if args.restore_only else f"x{outscale:g}"
    if not suffix or "/" in suffix or "\\" in suffix:
        raise ValueError(f"--suffix must be a non-empty name without slashes, got {suffix!r}")
    if args.output.exists() and not args.output.is_dir():
        raise ValueError(f"--output {str(args.output)!r} is a file; -o takes a folder (outputs are named "
                         f"<input>_{suffix}.<format> inside it)")
    if args.skip_existing:  # those outputs are skipped, so leaving them out as inputs overwrites nothing
        files = leave_out_own_outputs(files, {path for path in args.inputs if not path.is_dir()}, args.output,
                                      suffix, args.format)
    targets = output_paths(files, args.output, suffix, args.format)
    args.output.mkdir(parents=True, exist_ok=True)
    done, skipped, failed = 0, 0, []
    start = time.perf_counter()
    for path, target in tqdm(list(zip(files, targets)), desc="upscale", unit="image"):
        # An output that does not decode fully (a killed run's, say) is redone, not skipped.
        clip = is_clip(path)
        if args.skip_existing and target.exists() and (is_complete_clip(target) if clip else is_complete_image(target)):
            clear_stale_staging(target)  # a killed earlier save of it left its staging file
            skipped += 1
            continue
        try:
            options = dict(color_fix=args.color_fix, tile_size=args.tile_size or None,
                           tile_overlap=args.tile_overlap, max_pixels=args.max_pixels, device=args.device,
                           fast=args.fast)
            if clip:
                tqdm.write(upscale_clip_file(model, path, target, args, outscale, options))
                done += 1
                continue
            _check_output_fits(path, target, outscale)
            if args.restore_only:  # no colour fix: it would take the colour back from the damaged input
                result = model.run_restore(path, cleanup=args.cleanup, **{**options, "color_fix": None})
            else:
                result = model.run(path, detail=args.detail, cleanup=args.cleanup, outscale=outscale, **options)
            if result.quality is not None and model.has_axis("cleanup"):
                tqdm.write(f"{path.name}: {result.describe()}")
            save_image(result.image, target)
            done += 1
        except (ValueError, OSError) as error:
            # One bad file must not stop a folder: report it and go on.
            failed.append(path)
            tqdm.write(f"perceptual-sr: skipped {path}: {error}", file=sys.stderr)
    seconds = time.perf_counter() - start
    print(f"upscaled {done}, skipped {skipped} existing, failed {len(failed)} of {len(files)} images "
          f"in {seconds:.1f} s -> {args.output}")
    return 1 if failed else 0


def run_eval(args: argparse.Namespace, model: ImagePipeline) -> int:
    names = [folder.name for folder in args.data]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:  # results and comparison images are filed by the folder's name
        raise ValueError(f"several --data folders are named {', '.join(map(repr, repeated))}; their results would "
                         "overwrite each other: pass folders with distinct names (e.g. links)")
    from perceptual_sr.evaluation.evaluate import evaluate, markdown_table, sweep_detail  # scipy, lpips: the eval extra

    if args.sweep_detail:
        rows = sweep_detail(model, args.data, args.out, cleanup=args.cleanup, degradation=args.degradation,
                            max_images=args.max_images, color_fix=args.color_fix, device=args.device, fast=args.fast,
                            progress=True)
        for row in rows:
            print(f"detail {row['detail']:.2f} {row['set']}: PSNR-Y {row['model_psnr']:.2f} dB, "
                  f"LPIPS {row['model_lpips']:.4f}, grid {row['model_grid']:.2f}")
        print(f"wrote {args.out / 'sweep.csv'} and {args.out / 'perception_distortion.png'}")
        return 0
    # Per image: cleanup "auto" is measured on each LR.
    network = functools.partial(model.components_for, detail=args.detail, cleanup=args.cleanup)
    results = evaluate(network, args.data, scale=model.scale, out_dir=args.out, degradation=args.degradation,
                       max_images=args.max_images,
                       color_fix=args.color_fix, device=args.device, fast=args.fast, progress=True)
    print(markdown_table(results), end="")
    print(f"wrote {args.out / 'results.md'}, {args.out / 'results.csv'} and comparisons in {args.out / 'comparisons'}")
    return 0


def load_model(name: str | None, detail: float, cleanup: float | str = "auto") -> ImagePipeline:
    """The bundled weights, a folder or Hub repo (an SRPipeline), or an exported .onnx file (an
    OnnxPipeline, with its cleanup where the .cleanup.onnx file is beside it)."""
    if name and name.lower().endswith(".onnx"):
        from perceptual_sr.inference.onnx_pipeline import OnnxPipeline

        onnx_pipeline = OnnxPipeline(name)
        onnx_pipeline.check_settings(detail, cleanup)
        print(f"{name}: {onnx_pipeline.describe()}", file=sys.stderr)
        return onnx_pipeline
    pipeline = SRPipeline.from_pretrained(name or None)
    pipeline.check_settings(detail, cleanup)  # one error for a setting this model cannot give, not one per file
    return pipeline


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in PASS_THROUGH:
        try:
            return PASS_THROUGH[argv[0]][0](argv[1:])
        except ImportError as error:
            return _missing_extra(argv[0], error)
    args = build_parser().parse_args(argv)
    try:
        if args.command == "deploy-space":
            from perceptual_sr.app.deploy import deploy_space

            print(deploy_space(args.space, dry_run=args.dry_run, private=args.private or None))
            return 0
        if args.command == "export":
            from perceptual_sr.inference.onnx_pipeline import export_pipeline_onnx

            written = export_pipeline_onnx(SRPipeline.from_pretrained(args.model or None), args.output,
                                           detail=args.detail, opset=args.opset)
            print(f"wrote {' and '.join(map(str, written))}")
            return 0
        choose_device(args.device)  # a device this machine lacks is one error, not one per file
        model = load_model(args.model, args.detail, args.cleanup)
        with sigterm_as_interrupt():  # a kill cleans up as Ctrl-C does: no staging file is left behind
            if args.command == "upscale":
                return run_upscale(args, model)
            return run_eval(args, model)
    except KeyboardInterrupt:
        # Every file is written atomically, so what exists is whole; say how to carry on.
        follow_up = {"upscale": "; rerun with --skip-existing to continue"}.get(args.command, "")
        print(f"perceptual-sr {args.command}: interrupted; no partial files were left{follow_up}", file=sys.stderr)
        return 130
    except ImportError as error:
        return _missing_extra(args.command, error)
    except (ValueError, FileNotFoundError, MemoryError, OSError) as error:
        print(f"perceptual-sr {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
