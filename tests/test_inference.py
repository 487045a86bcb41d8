import numpy as np
import pytest
import torch
from PIL import Image, ImageCms
from skimage.exposure import match_histograms

from perceptual_sr import PerceptualSR, SRConfig, SRPipeline
from perceptual_sr.inference import tiling
from perceptual_sr.inference import upscale as inference
from perceptual_sr.inference.color_fix import match_histogram
from perceptual_sr.inference.upscale import (
    COLOR_FIXES,
    DEFAULT_COLOR_FIX,
    ImageTooLargeError,
    apply_color_fix,
    choose_device,
    upscale,
    upscale_array,
)
from perceptual_sr.networks import inference_network
from perceptual_sr.utils import color
from perceptual_sr.utils.image_io import resize_bicubic


def test_every_colour_fix_is_accepted_and_others_are_refused(model):
    image = np.random.default_rng(0).random((6, 5, 3)).astype(np.float32)
    for color_fix in COLOR_FIXES:
        assert upscale(model, image, color_fix=color_fix).shape == (24, 20, 3)
    assert DEFAULT_COLOR_FIX in COLOR_FIXES
    with pytest.raises(ValueError, match="color_fix must be one of"):
        upscale(model, image, color_fix="sepia")


def test_too_large_images_raise_an_error_that_is_a_value_error(model):
    with pytest.raises(ValueError) as raised:
        upscale(model, np.zeros((20, 30, 3), np.uint8), max_pixels=100)
    assert isinstance(raised.value, ImageTooLargeError) and "600" in str(raised.value)


@pytest.fixture
def unfused(monkeypatch):
    """Run the model itself rather than its BatchNorm-folded copy, so a test can patch its forward."""
    monkeypatch.setattr(inference.inference_network, "prepare", lambda model, device, fast: model)


@pytest.mark.slow
def test_tiled_matches_untiled_on_512(model, monkeypatch, unfused):
    image = np.random.default_rng(1).random((512, 512, 3), dtype=np.float32)
    calls = []
    forward = model.forward
    monkeypatch.setattr(model, "forward", lambda x: calls.append(tuple(x.shape)) or forward(x))
    untiled = upscale(model, image, tile_size=512, color_fix=None, fast=False, device="cpu")
    assert calls == [(1, 3, 512, 512)]
    calls.clear()
    tiled = upscale(model, image, tile_size=160, tile_overlap=16, tile_batch=2, color_fix=None, fast=False, device="cpu")
    assert len(calls) > 1 and all(batch <= 2 and max(side) <= 160 for batch, _, *side in calls)  # really tiled
    assert tiled.shape == untiled.shape == (2048, 2048, 3)
    assert np.abs(tiled - untiled).max() <= 1 / 255


def test_fast_path_close_to_fp32(make_photo, model):
    image = make_photo(40, 32)
    fast = upscale(model, image, color_fix=None, fast=True, device="cpu")
    exact = upscale(model, image, color_fix=None, fast=False, device="cpu")
    assert np.abs(fast.astype(int) - exact.astype(int)).max() <= 3


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L", "LA", "P", "CMYK", "I;16"])
def test_pil_modes_round_trip(make_photo, model, mode):
    image = Image.fromarray(make_photo(20, 12)).convert(mode)
    out = upscale(model, image, color_fix=None)
    expected = {"P": "RGB", "CMYK": "RGB"}.get(mode, mode)
    assert isinstance(out, Image.Image) and out.mode == expected and out.size == (80, 48)


def test_alpha_is_upscaled_bicubic_and_reattached(make_photo, model):
    rgba = np.dstack([make_photo(20, 12), np.tile(np.linspace(0, 255, 20, dtype=np.uint8), (12, 1))])
    out = upscale(model, Image.fromarray(rgba, "RGBA"), color_fix=None)
    expected = np.asarray(Image.fromarray(rgba[..., 3]).resize((80, 48), Image.Resampling.BICUBIC))
    assert np.abs(np.asarray(out.getchannel("A")).astype(int) - expected).max() <= 1


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32, np.float64])
@pytest.mark.parametrize("channels", [None, 1, 3, 4])
def test_numpy_round_trip(make_photo, model, dtype, channels):
    photo = make_photo(20, 12)
    planes = {None: photo[..., 0], 1: photo[..., :1], 3: photo, 4: np.dstack([photo, photo[..., :1]])}[channels]
    if dtype == np.uint16:
        image = planes.astype(np.uint16) * 257 + 3
    elif dtype == np.uint8:
        image = planes
    else:
        image = (planes / 255.0).astype(dtype)
    for color_fix in (None, "luma"):
        out = upscale(model, image, color_fix=color_fix)
        assert out.dtype == dtype and out.shape == (48, 80) + image.shape[2:]
        if dtype in (np.float32, np.float64):  # colour fix and bicubic alpha overshoot: clipped
            assert out.min() >= 0.0 and out.max() <= 1.0
    if dtype == np.uint16:
        assert (out % 257 != 0).any()  # 16 bits kept, not squeezed through 8


def test_tensor_round_trip(make_photo, model):
    image = torch.from_numpy(make_photo(20, 12)).permute(2, 0, 1).float() / 255
    out = upscale(model, image, color_fix=None)
    assert isinstance(out, torch.Tensor) and out.shape == (3, 48, 80) and out.dtype == torch.float32
    batch = upscale(model, torch.stack([image, image]).double(), color_fix=None)
    assert batch.shape == (2, 3, 48, 80) and batch.dtype == torch.float64
    assert torch.allclose(batch[0].float(), out, atol=1e-6)
    fixed = upscale(model, image, color_fix="luma")  # the colour fix's YCbCr round trip can leave the gamut
    assert fixed.shape == (3, 48, 80) and fixed.min() >= 0.0 and fixed.max() <= 1.0


def test_path_gives_pil_with_icc_and_orientation(make_photo, model, tmp_path):
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    image = Image.fromarray(make_photo(20, 12))
    exif = image.getexif()
    exif[0x0112] = 8  # rotate 90 degrees counter-clockwise on display
    path = tmp_path / "phone.jpg"
    image.save(path, exif=exif.tobytes(), icc_profile=icc)
    out = SRPipeline.from_network(model).upscale(str(path))
    assert isinstance(out, Image.Image) and out.size == (48, 80)
    assert out.info["icc_profile"] == icc
    assert out.getexif()[0x0112] == 1  # the EXIF block is kept, its orientation reset: pixels are upright


def test_bad_inputs_raise_value_error(make_photo, model, tmp_path):
    with pytest.raises(ImageTooLargeError):
        upscale(model, make_photo(20, 12), max_pixels=100)
    with pytest.raises(ValueError, match="empty"):
        upscale(model, np.zeros((0, 5, 3), np.uint8))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        upscale(model, np.full((4, 4, 3), 2.0, np.float32))
    with pytest.raises(ValueError, match="finite"):
        upscale(model, np.full((4, 4, 3), np.nan, np.float32))
    with pytest.raises(ValueError, match="dtype"):
        upscale(model, np.zeros((4, 4, 3), np.int64))
    with pytest.raises(ValueError, match="cannot upscale"):
        upscale(model, [[0, 1]])
    with pytest.raises(ValueError, match="color_fix"):
        upscale(model, make_photo(20, 12), color_fix="sepia")
    (tmp_path / "bad.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="corrupt"):
        upscale(model, tmp_path / "bad.png")
    with pytest.raises(ValueError, match="tile_overlap"):
        upscale(model, make_photo(20, 12), tile_size=64, tile_overlap=32)


def test_histogram_fix_matches_skimage():
    rng = np.random.default_rng(0)
    source = rng.integers(0, 200, (64, 64), dtype=np.uint8)
    reference = rng.integers(30, 255, (64, 64), dtype=np.uint8)
    expected = np.rint(match_histograms(source, reference)).astype(np.uint8)
    assert np.array_equal(match_histogram(source, reference), expected)


def test_histogram_fix_pulls_colours_towards_bicubic(make_photo):
    method = "histogram"
    low = make_photo(20, 12).astype(np.float32) / 255
    bicubic = resize_bicubic(low, 4)
    tinted = np.clip(bicubic * [1.0, 0.6, 0.6] + [0.0, 0.0, 0.2], 0, 1)  # a colour cast, as a bad net gives
    tinted_u8 = np.rint(tinted * 255).astype(np.uint8)
    fixed = apply_color_fix(tinted_u8, low, 4, method)
    assert fixed.dtype == np.uint8 and fixed.shape == tinted_u8.shape
    before = np.abs(tinted_u8.mean((0, 1)) - bicubic.mean((0, 1)) * 255).sum()
    after = np.abs(fixed.mean((0, 1)) - bicubic.mean((0, 1)) * 255).sum()
    assert after < before / 3


def test_out_of_memory_retries_with_smaller_batch_then_tiles(make_photo, model, monkeypatch, unfused):
    forward = model.forward
    seen = []

    def tight_memory(x):
        seen.append(tuple(x.shape))
        if x.shape[0] * x.shape[2] * x.shape[3] > 48 * 48:
            raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 1 GB")
        return forward(x)

    monkeypatch.setattr(model, "forward", tight_memory)
    out = upscale(model, make_photo(96, 96), tile_size=96, tile_overlap=8, tile_batch=4, color_fix=None, device="cpu")
    assert out.shape == (384, 384, 3)
    assert seen[-1][2] <= 48 and seen[-1][0] * seen[-1][2] * seen[-1][3] <= 48 * 48  # fits after backing off


def test_other_errors_are_not_swallowed(make_photo, model, monkeypatch, unfused):
    monkeypatch.setattr(model, "forward", lambda x: (_ for _ in ()).throw(RuntimeError("shape mismatch")))
    with pytest.raises(RuntimeError, match="shape mismatch"):
        upscale(model, make_photo(20, 12), color_fix=None)


def test_the_shared_model_is_never_moved_switched_or_changed(make_photo, model):
    model.train()
    before = {name: (tensor.data_ptr(), tensor.device, tensor.clone()) for name, tensor in model.state_dict().items()}
    for fast in (True, False):
        upscale(model, make_photo(20, 12), color_fix=None, device="cpu", fast=fast)
    assert model.training  # upscale runs a cached eval copy, never the model itself
    for name, tensor in model.state_dict().items():
        pointer, device, values = before[name]
        assert tensor.data_ptr() == pointer and tensor.device == device and torch.equal(tensor, values), name
    model.eval()
    assert choose_device("cpu").type == "cpu" and choose_device().type in ("cuda", "mps", "cpu")


def test_luma_fix_keeps_network_luma_and_bicubic_chroma(make_photo):
    low = make_photo(20, 12).astype(np.float32) / 255
    bicubic = resize_bicubic(low, 4)
    tinted = np.clip(bicubic * [1.0, 0.6, 0.6] + [0.0, 0.0, 0.2], 0, 1)
    tinted_u8 = np.rint(tinted * 255).astype(np.uint8)
    fixed = apply_color_fix(tinted_u8, low, 4, "luma").astype(np.float32) / 255
    to_ycc = color.RGB_TO_YCBCR
    fixed_ycc, tinted_ycc, bicubic_ycc = (a @ to_ycc.T for a in (fixed, tinted_u8 / 255.0, bicubic))
    inside = (fixed > 0.01).all(2) & (fixed < 0.99).all(2)  # away from clipping
    assert np.abs(fixed_ycc[..., 0] - tinted_ycc[..., 0])[inside].max() < 2 / 255
    assert np.abs(fixed_ycc[..., 1:] - bicubic_ycc[..., 1:])[inside].max() < 3 / 255
    assert np.abs(tinted_ycc[..., 1:] - bicubic_ycc[..., 1:]).mean() > 10 / 255  # the cast was there


@pytest.mark.parametrize("size", [(1, 1), (2, 2), (3, 3), (4, 4), (5, 5), (6, 6), (7, 7), (8, 8), (1, 37), (29, 1),
                                  (2, 50)])
def test_tiny_images_and_strips_upscale_close_to_bicubic(size):
    bundled = SRPipeline.from_network(PerceptualSR.from_pretrained())
    height, width = size
    rows, cols = np.mgrid[0:height, 0:width]
    smooth = np.stack([0.3 + 0.02 * rows, 0.5 + 0.01 * cols, 0.6 - 0.01 * (rows + cols)], -1).astype(np.float32)
    out = bundled.upscale(smooth, color_fix=None)
    assert out.shape == (4 * height, 4 * width, 3)
    assert np.abs(out - np.clip(resize_bicubic(smooth, 4), 0, 1)).mean() < 0.02
    image = Image.fromarray((smooth * 255).astype(np.uint8))
    assert bundled.upscale(image).size == (4 * width, 4 * height)


def test_empty_arrays_and_bad_tile_batch_are_clear_errors(model):
    with pytest.raises(ValueError, match="non-empty"):
        upscale_array(model, np.zeros((0, 5, 3), np.float32))
    with pytest.raises(ValueError, match="batch is empty"):
        upscale(model, torch.empty(0, 3, 8, 8))
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="tile_batch"):
            upscale_array(model, np.zeros((8, 8, 3), np.float32), tile_batch=bad)


@pytest.mark.parametrize("length", [1, 31, 192, 193, 256, 401, 1000, 4097])
def test_tile_plan_covers_exactly_with_equal_tiles_and_enough_overlap(length):
    size, starts = tiling.plan_tiles(length, 192, 16)
    assert size <= 192 and starts[0] == 0 and starts[-1] + size == length
    assert all(size - (b - a) >= 16 for a, b in zip(starts, starts[1:]))
    assert len(starts) == max(1, -(-(length - 16) // (192 - 16)))  # the fewest tiles that can do it


@pytest.mark.parametrize("bf16_seconds, chosen", [(0.5, torch.bfloat16), (0.95, None), (2.0, None)])
def test_bf16_is_used_on_cpu_only_where_measured_faster(monkeypatch, bf16_seconds, chosen):
    """The decision follows the timing: a fake clock makes each fp32 call take 1 s and each bf16
    call `bf16_seconds`; bf16 must win by 10%."""
    from perceptual_sr.utils import runtime
    clock = [0.0]

    class Timed(torch.nn.Module):
        def forward(self, x):
            clock[0] += bf16_seconds if torch.is_autocast_enabled("cpu") else 1.0
            return x

    monkeypatch.setattr(runtime, "_stand_in", Timed)
    monkeypatch.setattr(runtime.time, "perf_counter", lambda: clock[0])
    monkeypatch.setattr(runtime, "cpu_has_fast_bf16", lambda: True)
    runtime.cpu_bf16_is_faster.cache_clear()
    try:
        assert runtime.resolve_precision(torch.device("cpu")) == chosen
        assert runtime.resolve_precision(torch.device("cpu"), "fp32") is None
        monkeypatch.setattr(runtime, "cpu_has_fast_bf16", lambda: False)  # no bf16 hardware: never bf16
        runtime.cpu_bf16_is_faster.cache_clear()
        assert runtime.resolve_precision(torch.device("cpu")) is None
    finally:
        runtime.cpu_bf16_is_faster.cache_clear()


def test_folded_batchnorm_graph_matches_the_plain_fp32_module():
    torch.manual_seed(0)
    net = PerceptualSR(SRConfig(channels=8, residual_blocks=2, upsampler="resize-conv", global_skip="bicubic"))
    net.train()
    for _ in range(3):  # non-trivial BatchNorm statistics
        net(torch.rand(4, 3, 16, 16))
    torch.nn.init.normal_(net.tail.weight, std=0.05)
    net.eval()
    x = torch.rand(1, 3, 40, 36)
    with torch.no_grad():
        folded = inference_network.fold_batchnorm(net)
        assert not any(isinstance(layer, torch.nn.BatchNorm2d) for layer in folded.modules())
        assert (folded(x) - net(x)).abs().max().item() <= 1 / 255  # the parity bar; measured about 1e-6


def test_tensors_without_colour_fix_are_upscaled_as_tensors_matching_the_array_path(make_photo, model, monkeypatch):
    calls = []
    monkeypatch.setattr(inference, "_upscale_numpy", lambda *args: calls.append(args))  # must not be used
    image = torch.from_numpy(make_photo(24, 16)).permute(2, 0, 1).float() / 255
    out = upscale(model, image.double(), color_fix=None, fast=False)
    assert calls == [] and out.dtype == torch.float64 and out.shape == (3, 64, 96)
    monkeypatch.undo()
    expected = upscale(model, image.permute(1, 2, 0).numpy(), color_fix=None, fast=False)
    assert np.abs(out.permute(1, 2, 0).float().numpy() - expected).max() < 1e-6


@pytest.mark.slow
def test_reuse_freed_memory_applies_in_its_own_process_and_is_a_no_op_without_glibc(monkeypatch):
    import platform
    import subprocess
    import sys

    from perceptual_sr.utils import runtime
    code = "from perceptual_sr.utils.runtime import reuse_freed_memory as reuse; print(reuse(), reuse())"
    answer = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    expected = str(platform.libc_ver()[0] == "glibc")
    assert answer == [expected, expected]  # and asking again is harmless
    runtime.reuse_freed_memory.cache_clear()
    monkeypatch.setattr(runtime.ctypes, "CDLL", lambda *args, **kwargs: (_ for _ in ()).throw(OSError("no libc")))
    try:
        assert runtime.reuse_freed_memory() is False  # macOS, Windows, musl: nothing to tune, no error
    finally:
        runtime.reuse_freed_memory.cache_clear()


def test_upscale_array_takes_numpy_dtype_objects_as_well_as_types(make_photo, model):
    rgb = make_photo(20, 12).astype(np.float32) / 255
    for dtype in (np.uint8, np.dtype("uint8"), "uint8"):
        assert upscale_array(model, rgb, out_dtype=dtype, color_fix=None).dtype == np.uint8
    with pytest.raises(ValueError, match="out_dtype"):
        upscale_array(model, rgb, out_dtype=np.int32)
