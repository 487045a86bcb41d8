"""Training throughput: the default fast path vs plain fp32 eager, side by side in one run.

The fast path is what train.py does by default: channels_last, plus AMP on CUDA (bf16 where the
GPU has it, else fp16) and bf16 autocast on CPUs with AMX, fp32 on other CPUs
(runtime.training_precision). The baseline is fp32, contiguous, eager.
Both train the default network (SRConfig()) with the default loss on random data for the same
number of steps; prints samples/s and HR megapixels/s of each and their ratio.

    python benchmarks/bench_train.py [--hr-size 96] [--batch-size 8] [--steps 4] [--compile]
"""

from __future__ import annotations

import argparse
import time

import torch

from perceptual_sr import PerceptualLoss, PerceptualSR, SRConfig
from perceptual_sr.utils.runtime import (
    choose_device,
    cpu_bf16_is_faster,
    cpu_has_fast_bf16,
    resolve_precision,
    training_precision,
)


def samples_per_second(fast: bool, hr_size: int, batch_size: int, steps: int, device: torch.device,
                       compile_model: bool = False) -> float:
    torch.manual_seed(0)
    model = PerceptualSR(SRConfig()).to(device).train()
    loss_fn = PerceptualLoss("relu2_2", tv_weight=1e-5).to(device)
    memory_format = torch.channels_last if fast else torch.contiguous_format
    model, loss_fn = model.to(memory_format=memory_format), loss_fn.to(memory_format=memory_format)
    network = torch.compile(model) if compile_model else model
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    dtype = resolve_precision(device, training_precision(device, "auto")) if fast else None  # train.py's policy
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    lr = torch.rand(batch_size, 3, hr_size // 4, hr_size // 4, device=device).contiguous(memory_format=memory_format)
    hr = torch.rand(batch_size, 3, hr_size, hr_size, device=device).contiguous(memory_format=memory_format)
    for step in range(steps + 1):
        if step == 1:  # the first step selects kernels (and compiles): not timed
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            loss, _ = loss_fn(network(lr), hr)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps * batch_size / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hr-size", type=int, default=96)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--device", default=None)
    parser.add_argument("--compile", action="store_true", help="also torch.compile the fast path")
    args = parser.parse_args()
    device = choose_device(args.device)
    print(f"device {device}, {torch.get_num_threads()} threads, bf16 hardware: {cpu_has_fast_bf16()}, "
          f"bf16 measured faster: {cpu_bf16_is_faster()}, "
          f"HR {args.hr_size}px, batch {args.batch_size}, {args.steps} timed steps")
    baseline = samples_per_second(False, args.hr_size, args.batch_size, args.steps, device)
    fast = samples_per_second(True, args.hr_size, args.batch_size, args.steps, device, args.compile)
    megapixels = args.hr_size ** 2 / 1e6
    print(f"{'path':<28}{'samples/s':>12}{'HR MP/s':>10}")
    print(f"{'fp32 eager (baseline)':<28}{baseline:>12.2f}{baseline * megapixels:>10.3f}")
    print(f"{'default fast path':<28}{fast:>12.2f}{fast * megapixels:>10.3f}")
    print(f"ratio fast / baseline: {fast / baseline:.2f}x")


if __name__ == "__main__":
    main()
