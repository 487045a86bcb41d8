"""Runtime policy, defined once: which device runs the network, and in which precision.

Training, inference and the benchmarks all ask here, so a CPU without bf16 hardware is never
given bf16 by one of them and fp32 by another.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import time

import torch
from torch import nn

PRECISIONS = ("auto", "bf16", "fp16", "fp32")


def choose_device(device: str | torch.device | None = None) -> torch.device:
    """`device` if given (checked: it must exist here), else CUDA, then Apple MPS, then CPU."""
    if device is None or str(device) == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        chosen = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise ValueError(f"unknown device {str(device)!r}; use cpu, cuda, cuda:N or mps") from error
    if chosen.type not in ("cpu", "cuda", "mps"):  # meta, xla, ...: nothing to upscale or train on
        raise ValueError(f"device {str(device)!r} is not one perceptual_sr runs on; use cpu, cuda, cuda:N or mps")
    if chosen.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {str(device)!r} was asked for, but this machine has no usable CUDA GPU; use cpu")
    if chosen.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError(f"device {str(device)!r} was asked for, but Apple MPS is not available here; use cpu")
    return chosen


@functools.cache
def _cpu_flags() -> frozenset[str] | None:
    """The CPU flags Linux reports in /proc/cpuinfo; None elsewhere."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="ignore") as handle:
            for line in handle:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return None


def cpu_has_fast_bf16() -> bool:
    """Whether this CPU has bf16 matrix hardware (AVX-512 bf16 or AMX).

    Read from the CPU flags Linux reports; on other systems, from torch's own probe where it has one.
    bf16 autocast is 2-5x faster than fp32 for this network with that hardware and several times
    slower without it (measured on an AVX2-only AMD EPYC), so this decides the fast path.
    """
    flags = _cpu_flags()
    if flags is not None:
        return bool(flags & {"avx512_bf16", "amx_bf16"})
    probe = getattr(torch.cpu, "_is_avx512_bf16_supported", None)  # private; only a fallback
    return bool(probe()) if probe is not None else False


def cpu_has_amx_bf16() -> bool:
    """Whether this CPU has AMX tiles for bf16 (Intel Sapphire Rapids and later), from the flags
    Linux reports; False where they cannot be read."""
    flags = _cpu_flags()
    if flags is not None:
        return "amx_bf16" in flags
    probe = getattr(torch.cpu, "_is_amx_tile_supported", None)  # private; only a fallback
    return bool(probe()) if probe is not None else False


@functools.cache
def cpu_bf16_is_faster() -> bool:
    """Whether bf16 autocast beats fp32 on this CPU for a network like ours, measured once per process.

    bf16 hardware is necessary but not sufficient: on a Xeon with AVX-512 bf16 but no AMX we measured
    the bundled network at 0.45 MP/s in bf16 against 0.68 in fp32 (the dtype conversions around each
    layer cost more than the faster convolutions save), while CPUs with AMX run it 2-2.4x faster in
    bf16. So a small stand-in (9x9 head, a 3x3 body conv, a 2x2 upsampling stage to 256 channels and
    the 5x5 tail of the phase-stacked inference network, channels_last) is timed both ways; bf16 must win by 10%. Takes about 0.1 s.
    """
    if not cpu_has_fast_bf16():
        return False
    with torch.random.fork_rng(devices=[]):  # the caller's random stream stays as it was
        torch.manual_seed(0)
        stand_in = _stand_in()
    sample = torch.rand(1, 3, 48, 48, generator=torch.Generator().manual_seed(0))
    sample = sample.contiguous(memory_format=torch.channels_last)

    def fastest(dtype: torch.dtype | None) -> float:
        times = []
        with torch.inference_mode(), autocast(torch.device("cpu"), dtype):
            for _ in range(4):  # the first call includes kernel selection
                start = time.perf_counter()
                stand_in(sample)
                times.append(time.perf_counter() - start)
        return min(times[1:])

    return fastest(torch.bfloat16) * 1.1 < fastest(None)


def _stand_in() -> nn.Module:
    """A few layers shaped like the inference network's (`inference_network.PhaseNetwork`), for timing."""
    return nn.Sequential(
        nn.Conv2d(3, 64, 9, padding=4, padding_mode="reflect"), nn.ReLU(),
        nn.Conv2d(64, 64, 3, padding=1, padding_mode="reflect"), nn.ReLU(),
        nn.Conv2d(64, 256, 2, padding=1, padding_mode="replicate"), nn.ReLU(),  # an upsampling stage
        nn.Conv2d(256, 12, 5, padding=2, padding_mode="reflect"),  # the tail on the phase stack
    ).eval().to(memory_format=torch.channels_last)


def resolve_precision(device: torch.device, precision: str = "auto") -> torch.dtype | None:
    """The autocast dtype for `precision` on `device`, or None for plain fp32.

    auto: bf16 on CUDA where supported (else fp16); on CPUs, bf16 only where it is measured to be
    faster (`cpu_bf16_is_faster`); fp32 elsewhere (Apple MPS).
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "auto":
        if device.type == "cuda":
            precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        elif device.type == "cpu" and cpu_bf16_is_faster():
            precision = "bf16"
        else:
            precision = "fp32"
    return {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": None}[precision]


def training_precision(device: torch.device, precision: str = "auto") -> str:
    """The precision ("bf16", "fp16" or "fp32") a training run uses for `precision` on `device`.

    auto is decided by the hardware alone, never by a timing, so one recipe on one machine always
    trains in the same precision (and a checkpoint can record it): bf16 on CUDA where supported
    (else fp16, with loss scaling); on CPUs bf16 where they have AMX (a whole training step 2.4-2.7x
    faster than fp32 on a 2-core Xeon with AMX), else fp32 (bf16 training measured 5x slower on an
    AVX2-only EPYC and 1.4x slower on a Xeon with AVX-512 bf16 but no AMX); fp32 on Apple MPS.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if device.type == "cpu" and cpu_has_amx_bf16():
        return "bf16"
    return "fp32"


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """Autocast to `dtype` on `device`, or nothing when `dtype` is None."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


# glibc mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _M_ARENA_MAX = -1, -3, -8
_HEAP_LIMIT = 2**31 - 1  # bytes: allocations and free space below this stay in the heap


@functools.cache
def reuse_freed_memory() -> bool:
    """Let glibc keep freed feature maps in this process and hand them out again; True if applied.

    Process-wide, so the command line and the demo app call it at start-up; the library never does
    it behind a caller's back. By default glibc returns every allocation over 32 MB to the OS when
    it is freed, so each tile's feature maps (100-300 MB) are page-faulted in again, zeroed by the
    kernel: about a third of the inference time on a 2-core Xeon (the inference network at
    256x256: 1.53 -> 2.09 MP/s in a worker thread). Threads share the main heap (M_ARENA_MAX 1),
    since other arenas always map such sizes afresh. The cost: memory freed after a large image
    stays with the process for the next one. A no-op off glibc (macOS, Windows, musl).
    """
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        settings = ((_M_ARENA_MAX, 1), (_M_MMAP_THRESHOLD, _HEAP_LIMIT), (_M_TRIM_THRESHOLD, _HEAP_LIMIT))
        applied = [libc.mallopt(parameter, value) == 1 for parameter, value in settings]  # every one, always
        return all(applied)
    except (OSError, AttributeError):
        return False
