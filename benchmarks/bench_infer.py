"""Inference speed of what users run, against the plain fp32 module, and peak memory for a 4096x4096 output.

For each input size, side by side in one process on the bundled model (output MP/s, and the ratio
to the baseline):
- baseline: the plain fp32 eager module, one forward of the whole image;
- `upscale()`: the default path (tiles, inference network, measured precision, colour fix);
- `upscale()` with the ONNX Runtime backend (`OnnxSR`; skipped without onnxruntime): the file
  `export_onnx` writes (the inference network), and the plain module as exported before it, on
  ONNX Runtime's CPU provider; and the file on the OpenVINO provider at the precision `OnnxSR`
  chooses, where ONNX Runtime is the OpenVINO build (`pip install onnxruntime-openvino`);
- with --int8 FOLDER: the inference network statically quantized by ONNX Runtime (QDQ, int8
  per-channel weights, uint8 activations calibrated on 32 crops of FOLDER's images; the tail, its
  input and the bicubic skip stay fp32): the experiment behind the README's int8 note. --onnx-dir keeps
  the files, e.g. for `perceptual-sr eval --model DIR/int8.onnx`;
- one raw forward of the whole image: the module under bf16 autocast + channels_last (the
  previous fast settings) and the rewritten inference network (`inference_network`) at the
  precision `upscale()` chooses.
Then a 1024x1024 -> 4096x4096 `upscale()` in a child process, as the command line runs it
(`runtime.reuse_freed_memory()` on), with its speed and peak resident memory.

--reuse-freed-memory runs the table in such a process too (glibc keeps freed feature maps for
reuse: faster for every contender, the baseline included).

    python benchmarks/bench_infer.py [--sizes 256,512,1024] [--repeats 3] [--rss-output 4096] [--device cpu]
                                     [--reuse-freed-memory] [--int8 FOLDER] [--onnx-dir DIR]
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from perceptual_sr import PerceptualSR
from perceptual_sr.inference.upscale import upscale
from perceptual_sr.networks import inference_network
from perceptual_sr.utils.runtime import (
    autocast,
    choose_device,
    cpu_bf16_is_faster,
    cpu_has_fast_bf16,
    resolve_precision,
    reuse_freed_memory,
)


def seconds_per_call(run: Callable[[], object], repeats: int) -> float:
    """The fastest of `repeats` calls after a warm-up: the least disturbed by the machine (page
    faults in a VM vary from run to run by more than the differences measured here)."""
    run()  # warm-up: kernel selection, caches
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def contenders(model: PerceptualSR, image: np.ndarray, device: torch.device, onnx_paths: dict[str, Path]) -> dict:
    """name -> a call producing the upscaled image, the baseline first. onnx_paths: row name -> file."""
    batch = torch.from_numpy(image).permute(2, 0, 1)[None].float().div(255).to(device)
    batch_cl = batch.contiguous(memory_format=torch.channels_last)
    plain = inference_network.prepare(model, device, fast=False)
    module_cl = inference_network.fold_batchnorm(model).to(device, memory_format=torch.channels_last)
    network = inference_network.build(model).to(device, memory_format=torch.channels_last)
    precision = resolve_precision(device, "auto")

    def forward(net, x, dtype):
        with torch.inference_mode(), autocast(device, dtype):
            return net(x)

    runs = {
        "fp32 eager module, whole image (baseline)": lambda: forward(plain, batch, None),
        "upscale() default": lambda: upscale(model, image, device=device),
    }
    if onnx_paths:
        from perceptual_sr.inference.onnx_export import OnnxSR

        for name, path in onnx_paths.items():
            runs[name] = lambda onnx_model=OnnxSR(path, provider="cpu"): upscale(onnx_model, image)
        try:  # the default where ONNX Runtime is the OpenVINO build (onnxruntime-openvino)
            openvino = OnnxSR(onnx_paths["upscale() ONNX Runtime"], provider="openvino")
            runs[f"upscale() ONNX Runtime, OpenVINO {openvino.precision}"] = lambda: upscale(openvino, image)
        except ValueError as error:
            print(f"  OpenVINO provider skipped: {str(error).split(':')[0]}")
    runs["raw forward: module, bf16 + channels_last"] = lambda: forward(module_cl, batch_cl, torch.bfloat16)
    runs[f"raw forward: inference network, {precision or 'fp32'}"] = lambda: forward(network, batch_cl, precision)
    return runs


def onnx_files(model: PerceptualSR, folder: Path, int8_calibration: Path | None) -> dict[str, Path]:
    """Row name -> ONNX file of `model` written into `folder`: the export, the previous export
    (the plain module, as files written before the inference form hold it), and the int8 export."""
    import dataclasses
    import json

    from perceptual_sr.inference.onnx_export import CONFIG_KEY, DEFAULT_OPSET, _write_onnx, export_onnx

    folder.mkdir(parents=True, exist_ok=True)
    metadata = {CONFIG_KEY: json.dumps(dataclasses.asdict(model.config))}
    files = {"upscale() ONNX Runtime": export_onnx(model, folder / "model.onnx"),
             "upscale() ONNX Runtime, previous export": _write_onnx(model.eval(), folder / "plain.onnx",
                                                                    DEFAULT_OPSET, metadata)}
    if int8_calibration is not None:
        files["upscale() ONNX Runtime int8"] = quantize_int8(files["upscale() ONNX Runtime"], int8_calibration,
                                                             folder / "int8.onnx")
    return files


def quantize_int8(fp32_path: Path, calibration: Path, int8_path: Path, crops: int = 32, side: int = 48) -> Path:
    """ONNX Runtime static quantization of an exported file: QDQ, int8 per-channel weights, uint8
    activations (min-max over `crops` random `side`-px crops of x4-downscaled images from
    `calibration`, as training's LR crops). The tail (12 output channels: ONNX Runtime's int8
    convolution ran it 3.6x slower than fp32) and the bicubic skip stay fp32."""
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process
    from PIL import Image

    rng = np.random.default_rng(0)
    batches = []
    for file in sorted(calibration.glob("*.*")):
        if len(batches) == crops or file.suffix.lower() not in (".jpg", ".jpeg", ".png"):
            continue
        photo = Image.open(file).convert("RGB")
        low_res = np.asarray(photo.resize((photo.width // 4, photo.height // 4), Image.BICUBIC), np.float32) / 255
        if min(low_res.shape[:2]) <= side:
            continue
        for _ in range(2):
            top, left = (int(rng.integers(0, extent - side)) for extent in low_res.shape[:2])
            batches.append(np.ascontiguousarray(low_res[top:top + side, left:left + side].transpose(2, 0, 1)[None]))

    class Crops(CalibrationDataReader):
        def __init__(self) -> None:
            self.remaining = iter(batches)

        def get_next(self) -> dict | None:
            batch = next(self.remaining, None)
            return None if batch is None else {"low_res": batch}

    prepared = int8_path.with_name("prepared.onnx")
    quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
    graph = onnx.load(str(prepared))
    weights = {tensor.name: tensor for tensor in graph.graph.initializer}
    keep_fp32 = [node.name for node in graph.graph.node if node.op_type == "Conv" and node.input[1] in weights
                 and weights[node.input[1]].dims[0] in (3 * 4, 3 * 16)]  # the tail, the bicubic skip
    # and the node building the tail's input: a quantized one lets ONNX Runtime run the tail in int8 anyway
    tail_inputs = {node.input[0] for node in graph.graph.node if node.name in keep_fp32}
    keep_fp32 += [node.name for node in graph.graph.node if tail_inputs & set(node.output) and node.op_type != "Pad"]
    quantize_static(str(prepared), str(int8_path), Crops(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, nodes_to_exclude=keep_fp32,
                    op_types_to_quantize=["Conv", "Relu", "Concat", "Slice", "Pad", "DepthToSpace", "Unsqueeze",
                                          "Reshape"])
    quantized = onnx.load(str(int8_path))
    onnx.helper.set_model_props(quantized, {entry.key: entry.value for entry in onnx.load(str(fp32_path)).metadata_props})
    onnx.save(quantized, str(int8_path))
    return int8_path


def peak_rss_mib() -> float:
    """This process's peak resident memory. Linux's VmHWM belongs to the process image; getrusage's
    maximum survives exec, so a child started by a big parent would report the parent's peak."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def peak_rss_child(output_size: int, device: str) -> None:
    """Run in a child process: upscale to output_size^2 with the default settings, print peak RSS."""
    reuse_freed_memory()
    model = PerceptualSR.from_pretrained()
    image = np.random.default_rng(0).integers(0, 256, (output_size // 4, output_size // 4, 3), dtype=np.uint8)
    before = peak_rss_mib()
    start = time.perf_counter()
    out = upscale(model, image, device=device)  # default colour fix, tiling and fast path
    seconds = time.perf_counter() - start
    peak = peak_rss_mib()
    print(f"{out.shape[1]}x{out.shape[0]} output in {seconds:.1f} s ({out.shape[0] * out.shape[1] / 1e6 / seconds:.2f} "
          f"MP/s): peak RSS {peak:.0f} MiB ({before:.0f} MiB of it before upscaling: Python, torch, model)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="256,512,1024", help="input sides, comma-separated")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rss-output", type=int, default=4096, help="output side for the memory test (0: skip)")
    parser.add_argument("--device", default=None)
    parser.add_argument("--reuse-freed-memory", action="store_true", help="as the command line and app run")
    parser.add_argument("--int8", type=Path, default=None, help="add the int8 row, calibrated on this folder's images")
    parser.add_argument("--onnx-dir", type=Path, default=None, help="write the ONNX files here (default: a temporary one)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    device = choose_device(args.device)
    if args.reuse_freed_memory:
        reuse_freed_memory()
    if args.child:
        peak_rss_child(args.rss_output, str(device))
        return
    model = PerceptualSR.from_pretrained()
    print(f"device {device}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"CPU bf16 hardware: {cpu_has_fast_bf16()}, bf16 measured faster: {cpu_bf16_is_faster()}, "
          f"freed memory reused: {args.reuse_freed_memory}")
    with tempfile.TemporaryDirectory() as folder:
        onnx_paths = {}
        try:
            onnx_paths = onnx_files(model, Path(args.onnx_dir or folder), args.int8)
        except ImportError as error:
            print(f"ONNX Runtime skipped: {error}")
        for size in (int(side) for side in args.sizes.split(",")):
            image = np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)
            output_megapixels = (size * model.scale) ** 2 / 1e6
            print(f"\ninput {size}x{size} -> output {size * model.scale}x{size * model.scale}")
            baseline = None
            for name, run in contenders(model, image, device, onnx_paths).items():
                try:
                    speed = output_megapixels / seconds_per_call(run, args.repeats)
                except (RuntimeError, MemoryError) as error:  # the whole-image baseline at 1024 needs ~15 GB
                    print(f"  {name:48s} failed: {str(error).splitlines()[0][:60]}")
                    continue
                baseline = baseline or speed
                print(f"  {name:48s} {speed:6.3f} MP/s  {speed / baseline:5.2f}x")
    if args.rss_output:
        subprocess.run([sys.executable, __file__, "--child", "--rss-output", str(args.rss_output),
                        "--device", str(device)], check=True)


if __name__ == "__main__":
    main()
