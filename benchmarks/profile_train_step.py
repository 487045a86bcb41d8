"""Where one training step's time goes: data, network, VGG loss, grid penalty, optimizer.

Times the parts of one step of the shipped model's recipe (the bundled config.json: resize-conv,
bicubic skip; loss relu2_2 + tv 1e-5 + pixel 10 + grid 15,000) on random weights, in train mode
and channels_last as train.py runs it, for each precision and thread count asked:

    data        DataLoader batch from a prepared dataset (a temporary random one unless --data),
                random crops and flips, channels_last: what training's `batches` does per step
    net fwd     the network's forward (PerceptualSR; "phase" rows: phase_training.phase_forward)
    vgg fwd     VGG-16 features of output and target, and the feature MSE
    grid+pix    grid penalty, pixel MSE and TV, forward
    vgg bwd     backward of the feature term to the network's output
    grid+pix bwd  backward of the other terms to the output
    net bwd     backward through the network to the parameters
    adam        the optimizer step
    step        one whole step timed end to end (as training.train_step: autocast, loss,
                backward, Adam), to check that the parts add up

Each figure is the median of --repeats timed steps after one warm-up step, in milliseconds.

    python benchmarks/profile_train_step.py [--hr-size 96] [--batch-size 8] [--threads 1,2]
        [--precisions fp32,bf16] [--phase] [--data PREPARED_FOLDER]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from perceptual_sr import PerceptualLoss, PerceptualSR, SRConfig
from perceptual_sr.data.dataset import DATASET_FORMAT_VERSION, SRPairDataset
from perceptual_sr.hub.weights import DEFAULT_WEIGHTS_DIR
from perceptual_sr.networks.phase_training import phase_forward
from perceptual_sr.training.loss import periodic_error, total_variation
from perceptual_sr.utils.runtime import cpu_has_fast_bf16

PARTS = ["data", "net fwd", "vgg fwd", "grid+pix fwd", "vgg bwd", "grid+pix bwd", "net bwd", "adam"]
RECIPE = dict(feature_weights="relu2_2", tv_weight=1e-5, pixel_weight=10.0, grid_weight=15_000.0)


def make_dataset(folder: Path, count: int, hr_size: int, scale: int) -> None:
    """A prepared dataset of random pixels in the format `SRPairDataset` reads."""
    rng = np.random.default_rng(0)
    np.save(folder / "train_hr.npy", rng.integers(0, 256, (count, hr_size, hr_size, 3), dtype=np.uint8))
    np.save(folder / "train_lr.npy", rng.integers(0, 256, (count, hr_size // scale, hr_size // scale, 3),
                                                  dtype=np.uint8))
    manifest = {"format_version": DATASET_FORMAT_VERSION, "counts": {"train": count, "val": 0},
                "hr_size": hr_size, "scale": scale}
    (folder / "manifest.json").write_text(json.dumps(manifest))


class DataSource:
    """Batches as training's `batches` makes them (workers=0: the CPU cost of the data path)."""

    def __init__(self, root: Path, batch_size: int, crop_size: int, scale: int) -> None:
        from perceptual_sr.training import loop as training  # the augmentation lives with the training loop

        self.training, self.scale, self.crop_size = training, scale, crop_size
        self.loader = torch.utils.data.DataLoader(SRPairDataset(root, "train"), batch_size=batch_size,
                                                  shuffle=True, drop_last=True, num_workers=0)
        self.iterator, self.step = iter(self.loader), 0

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        try:
            low_res, high_res = next(self.iterator)
        except StopIteration:
            self.iterator = iter(self.loader)
            low_res, high_res = next(self.iterator)
        generator = torch.Generator().manual_seed(self.step)
        self.step += 1
        low_res, high_res = self.training.random_crops(low_res, high_res, self.scale, self.crop_size, generator)
        low_res, high_res = self.training.random_dihedral(low_res, high_res, generator)
        return (low_res.contiguous(memory_format=torch.channels_last),
                high_res.contiguous(memory_format=torch.channels_last))


def timed(times: dict[str, float], name: str, function):
    start = time.perf_counter()
    result = function()
    times[name] = times.get(name, 0.0) + time.perf_counter() - start
    return result


def profile_step(model, forward, loss_fn: PerceptualLoss, optimizer, data: DataSource,
                 dtype: torch.dtype | None) -> dict[str, float]:
    """One step, split into PARTS (seconds)."""
    times: dict[str, float] = {}
    low_res, high_res = timed(times, "data", data.next)
    with torch.autocast("cpu", dtype=dtype or torch.float32, enabled=dtype is not None):
        output = timed(times, "net fwd", lambda: forward(model, low_res))
        # Cut the graph at the output, so each loss part's backward can be timed on its own.
        cut = output.detach().requires_grad_()

        def vgg_terms():
            with torch.no_grad():
                target_features = loss_fn.vgg(high_res)
            output_features = loss_fn.vgg(cut)
            return sum(weight * F.mse_loss(output_features[name].float(), target_features[name].float())
                       for name, weight in loss_fn.feature_weights.items())

        def other_terms():
            return (loss_fn.tv_weight * total_variation(cut.float())
                    + loss_fn.grid_weight * periodic_error(cut, high_res, loss_fn.grid_period)
                    + loss_fn.pixel_weight * F.mse_loss(cut.float(), high_res.float()))

        feature = timed(times, "vgg fwd", vgg_terms)
        other = timed(times, "grid+pix fwd", other_terms)
    feature_grad = timed(times, "vgg bwd", lambda: torch.autograd.grad(feature, cut)[0])
    other_grad = timed(times, "grid+pix bwd", lambda: torch.autograd.grad(other, cut)[0])
    optimizer.zero_grad(set_to_none=True)
    timed(times, "net bwd", lambda: output.backward(feature_grad + other_grad))
    timed(times, "adam", optimizer.step)
    return times


def whole_step(model, forward, loss_fn, optimizer, data: DataSource, dtype: torch.dtype | None) -> float:
    """One step as training.train_step runs it (no split), in seconds."""
    start = time.perf_counter()
    low_res, high_res = data.next()
    with torch.autocast("cpu", dtype=dtype or torch.float32, enabled=dtype is not None):
        loss, _ = loss_fn(forward(model, low_res), high_res)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return time.perf_counter() - start


def plain_forward(model, low_res):
    return model(low_res)


def profile(config: SRConfig, data: DataSource, dtype: torch.dtype | None, phase: bool,
            repeats: int) -> dict[str, float]:
    torch.manual_seed(0)
    model = PerceptualSR(config).train().to(memory_format=torch.channels_last)
    try:
        loss_fn = PerceptualLoss(**RECIPE, grid_period=config.scale)
    except FileNotFoundError:  # a wheel install has no ImageNet VGG: random weights do the same work
        loss_fn = PerceptualLoss(**RECIPE, grid_period=config.scale, vgg_weights=None)
    loss_fn = loss_fn.to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    forward = phase_forward if phase else plain_forward
    runs = [profile_step(model, forward, loss_fn, optimizer, data, dtype) for _ in range(repeats + 1)][1:]
    result = {part: statistics.median(run[part] for run in runs) * 1e3 for part in PARTS}
    # The split recomputes the loss by hand: it must be PerceptualLoss's (same batch, same weights).
    low_res, high_res = data.next()
    with torch.no_grad(), torch.autocast("cpu", dtype=dtype or torch.float32, enabled=dtype is not None):
        output = forward(model, low_res)
        expected = loss_fn(output, high_res)[0].item()
        split = profile_loss_only(loss_fn, output, high_res)
    assert abs(split - expected) <= 1e-3 * abs(expected), (split, expected)
    steps = [whole_step(model, forward, loss_fn, optimizer, data, dtype) for _ in range(repeats)]
    result["step"] = statistics.median(steps) * 1e3
    return result


def profile_loss_only(loss_fn: PerceptualLoss, output: torch.Tensor, high_res: torch.Tensor) -> float:
    features_out, features_target = loss_fn.vgg(output), loss_fn.vgg(high_res)
    total = sum(weight * F.mse_loss(features_out[name].float(), features_target[name].float())
                for name, weight in loss_fn.feature_weights.items())
    total = total + loss_fn.tv_weight * total_variation(output.float())
    total = total + loss_fn.grid_weight * periodic_error(output, high_res, loss_fn.grid_period)
    total = total + loss_fn.pixel_weight * F.mse_loss(output.float(), high_res.float())
    return total.item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hr-size", type=int, default=96, help="HR crop side (train.py --crop-size)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3, help="timed steps per setting, after one warm-up")
    parser.add_argument("--threads", default="1,2", help="comma-separated torch thread counts")
    parser.add_argument("--precisions", default="fp32,bf16", help="fp32 and/or bf16 (autocast)")
    parser.add_argument("--phase", action="store_true", help="also time phase_training.phase_forward")
    parser.add_argument("--data", type=Path, default=None, help="a prepared dataset (default: random pixels)")
    args = parser.parse_args()

    config = SRConfig.from_dict(json.loads((DEFAULT_WEIGHTS_DIR / "config.json").read_text()))
    if args.hr_size % config.scale:
        parser.error(f"--hr-size {args.hr_size} is not a multiple of the scale {config.scale}")
    print(f"config {DEFAULT_WEIGHTS_DIR.name}: {config.upsampler}, skip {config.global_skip}, x{config.scale}; "
          f"batch {args.batch_size} x HR {args.hr_size}px (LR {args.hr_size // config.scale}px); "
          f"bf16 hardware: {cpu_has_fast_bf16()}; median of {args.repeats} steps, ms")
    with tempfile.TemporaryDirectory() as scratch:
        root = args.data
        if root is None:
            root = Path(scratch)
            make_dataset(root, 4 * args.batch_size, max(288, args.hr_size), config.scale)
        data = DataSource(root, args.batch_size, args.hr_size, config.scale)
        header = f"{'threads':>7} {'dtype':>5} {'net':>5} " + "".join(f"{part:>13}" for part in PARTS) \
            + f"{'sum':>9}{'step':>9}"
        print(header)
        for threads in (int(t) for t in args.threads.split(",")):
            torch.set_num_threads(threads)
            for precision in args.precisions.split(","):
                dtype = {"fp32": None, "bf16": torch.bfloat16}[precision]
                for phase in (False, True) if args.phase else (False,):
                    row = profile(config, data, dtype, phase, args.repeats)
                    print(f"{threads:>7} {precision:>5} {'phase' if phase else 'plain':>5} "
                          + "".join(f"{row[part]:>13.0f}" for part in PARTS)
                          + f"{sum(row[part] for part in PARTS):>9.0f}{row['step']:>9.0f}", flush=True)


if __name__ == "__main__":
    main()
