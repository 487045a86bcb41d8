"""The app's own overhead: a whole prediction of the demo against `upscale()` alone, on one photo.

Side by side in one process, set up as `python app.py` runs (`runtime.reuse_freed_memory()` on,
bundled model, the app's options: automatic tiles and clean-up), alternating, `--repeats` each:
- `upscale()`: `SRPipeline.upscale` of the opened image, the result kept in memory;
- the app: `demo.Upscaler` on the file, start to finish (decode, clean-up estimate, upscale, the
  full-size PNG download, the slider previews and the 1:1 crops);
- with --through-gradio: the same prediction through a running Gradio server and `gradio_client`
  (upload, queue, Gradio's copies of the outputs), as a visitor's click runs it.
Then the app's parts one by one on the last result, so the ratio can be explained.

    python benchmarks/bench_app.py [--image examples/animal_cat.jpg] [--side 1024] [--repeats 3] [--through-gradio]

The photo is resized to `side` x `side` and saved as PNG (the size the Space accepts at most).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image

from perceptual_sr.app import demo
from perceptual_sr.inference.pipeline import SRPipeline
from perceptual_sr.utils.image_io import open_image, save_image
from perceptual_sr.utils.runtime import reuse_freed_memory

ROOT = Path(__file__).resolve().parent.parent


def _seconds(function) -> float:
    started = time.perf_counter()
    function()
    return time.perf_counter() - started


def _through_gradio(pipeline: SRPipeline, path: Path):
    """A callable that runs one prediction through a live server, and the server to close."""
    from gradio_client import Client, handle_file

    app = demo.build_demo(pipeline, examples_dir=None)
    app.launch(prevent_thread_lock=True, server_name="127.0.0.1", quiet=True)
    client = Client(app.local_url, verbose=False)
    return (lambda: client.predict(handle_file(str(path)), api_name="/upscale")), app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image", type=Path, default=ROOT / "examples" / "animal_cat.jpg")
    parser.add_argument("--side", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--through-gradio", action="store_true")
    args = parser.parse_args()
    reuse_freed_memory()  # as serve.py does at start-up
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    pipeline = SRPipeline.from_pretrained()
    folder = Path(tempfile.mkdtemp(prefix="bench_app_"))
    path = folder / f"photo_{args.side}.png"
    with Image.open(args.image) as source:
        save_image(source.convert("RGB").resize((args.side, args.side), Image.Resampling.LANCZOS), path)
    upscaler = demo.Upscaler(pipeline, output_dir=folder / "out")
    contenders = {
        "upscale()": lambda: pipeline.upscale(open_image(path)),
        "app prediction": lambda: upscaler(str(path)),
    }
    server = None
    if args.through_gradio:
        contenders["app through Gradio"], server = _through_gradio(pipeline, path)
    for function in contenders.values():  # warm-up: blends, inference networks, allocator
        function()
    times = {name: [] for name in contenders}
    for _ in range(args.repeats):
        for name, function in contenders.items():
            times[name].append(_seconds(function))
    baseline = statistics.median(times["upscale()"])
    print(f"\n{args.side}x{args.side} PNG from {args.image.name}, median of {args.repeats}:")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"  {name:<22} {median:6.2f} s   {median / baseline:4.2f}x upscale()")

    # The parts, one by one, on one result (what the app does besides the network).
    image = open_image(path)
    result = pipeline.upscale(image)
    parts = {
        "decode": lambda: open_image(path),
        "clean-up estimate": lambda: pipeline.assess(image),
        "PNG download": lambda: save_image(result, folder / "part.png", compress_level=demo.DOWNLOAD_COMPRESS_LEVEL),
        "slider previews": lambda: demo._slider_previews(path, result, folder, "part"),
        "1:1 crops": lambda: demo._detail_crops(path, result, folder, "part", pipeline.scale),
    }
    print("\nthe app's parts besides the network:")
    for name, function in parts.items():
        print(f"  {name:<22} {statistics.median(_seconds(function) for _ in range(args.repeats)):6.2f} s")
    if server is not None:
        server.close()


if __name__ == "__main__":
    main()
