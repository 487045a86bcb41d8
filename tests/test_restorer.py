"""The cleanup network: shapes, the identity at strength 0, its receptive field, save and load, for
either way back to the input's size (pixel-shuffle, or a bilinear resize) and for a correction of
colour only."""

import pytest
import torch

from perceptual_sr.networks.restorer import CleanupAt, CleanupConfig, CleanupNet

TINY = CleanupConfig(channels=8, full_res_channels=4, blocks=2)
TINY_RESIZE = CleanupConfig(channels=8, full_res_channels=4, blocks=2, upsample="resize")
TINY_CHROMA = CleanupConfig(channels=8, full_res_channels=4, blocks=2, upsample="resize", corrects="chroma")
EACH_DESIGN = pytest.mark.parametrize("config", [TINY, TINY_RESIZE, TINY_CHROMA], ids=["shuffle", "resize", "chroma"])


def _trained_looking(config: CleanupConfig = TINY) -> CleanupNet:
    """A network whose last layer is not the zero it starts from (a fresh one is the identity)."""
    torch.manual_seed(0)
    network = CleanupNet(config)
    with torch.no_grad():
        network.tail[-1].weight.normal_(0, 0.1)
    return network.eval()


@EACH_DESIGN
@pytest.mark.parametrize("size", [(1, 1), (1, 7), (5, 3), (8, 8), (33, 20)])
def test_any_size_keeps_its_shape(size, config):
    image = torch.rand(2, 3, *size)
    assert _trained_looking(config)(image, 0.7).shape == image.shape


@EACH_DESIGN
def test_strength_zero_and_a_fresh_network_return_the_input_exactly(config):
    image = torch.rand(1, 3, 16, 16)
    assert torch.equal(_trained_looking(config)(image, 0.0), image)
    assert torch.equal(CleanupNet(config)(image, 1.0), image)  # starts from "change nothing"


def test_one_strength_per_image_in_a_batch():
    network, image = _trained_looking(), torch.rand(2, 3, 12, 12)
    both = network(image, torch.tensor([0.0, 1.0]))
    assert torch.equal(both[0], image[0])
    assert torch.allclose(both[1], network(image[1:], 1.0)[0], atol=1e-6)
    with pytest.raises(ValueError, match="one strength or one per image"):
        network(image, torch.tensor([0.1, 0.2, 0.3]))


@EACH_DESIGN
def test_every_parameter_gets_a_gradient_and_the_count_is_the_configs(config):
    network = _trained_looking(config).train()
    assert config.parameter_count() == sum(p.numel() for p in network.parameters())
    network(torch.rand(2, 3, 16, 16), torch.tensor([0.5, 1.0])).square().mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in network.parameters())


@pytest.mark.parametrize("upsample", ["shuffle", "resize"])
def test_the_receptive_field_spans_three_jpeg_blocks_and_matches_the_config(upsample):
    config = CleanupConfig(upsample=upsample)
    network = _trained_looking(config)
    image = torch.rand(1, 3, 101, 101, requires_grad=True)
    network(image, 1.0)[0, :, 50, 50].sum().backward()
    reached = (image.grad[0].abs().sum(0) > 0).nonzero()
    side = int((reached.max(0).values - reached.min(0).values + 1).max())
    assert side >= 24 and side <= config.receptive_field() + 1


def test_its_cost_is_within_the_budget_of_the_issue():
    # At most 40,000 multiply-accumulates per output pixel of the x4 upscale: 640,000 per LR pixel.
    assert CleanupConfig().macs_per_pixel() <= 640_000
    assert CleanupConfig(upsample="resize").macs_per_pixel() == CleanupConfig().macs_per_pixel()


def test_resize_upsampling_has_no_per_phase_weights_to_paint_a_two_pixel_grid_with():
    """On a flat input a shuffle network's output differs between the four sub-pixel phases (each
    has its own slice of the up conv); a resize network's cannot."""
    image = torch.full((1, 3, 16, 16), 0.5)
    for config, phases_differ in ((TINY, True), (TINY_RESIZE, False)):
        torch.manual_seed(1)
        network = CleanupNet(config)
        with torch.no_grad():
            network.tail[-1].weight.normal_(0, 0.3)
        output = network(image, 1.0)[0, :, 4:12, 4:12]  # away from the borders' reflection
        phases = torch.stack([output[:, i::2, j::2] for i in range(2) for j in range(2)])
        assert bool((phases.amax(0) - phases.amin(0)).max() > 1e-4) == phases_differ, config.upsample


@EACH_DESIGN
def test_save_and_load_give_the_same_function(tmp_path, config):
    network = _trained_looking(config)
    network.save_pretrained(tmp_path / "cleanup")
    loaded = CleanupNet.from_pretrained(tmp_path / "cleanup")
    image = torch.rand(1, 3, 9, 14)
    assert loaded.config == config
    assert torch.equal(loaded(image, 0.4), network(image, 0.4))


def test_a_damaged_config_is_a_clear_error():
    with pytest.raises(ValueError, match="blocks must be"):
        CleanupConfig(blocks=-1)
    with pytest.raises(ValueError, match="Is config.json damaged"):
        CleanupConfig(channels=100_000)
    with pytest.raises(ValueError, match="not a 'perceptual-sr-cleanup'"):
        CleanupConfig(model_type="perceptual-sr")
    with pytest.raises(ValueError, match="upsample must be one of"):
        CleanupConfig(upsample="deconv")
    with pytest.raises(ValueError, match="corrects must be one of"):
        CleanupConfig(corrects="luma")
    with pytest.raises(ValueError, match="unknown CleanupConfig keys"):
        CleanupNet({"channels": 8, "scale": 4})


def test_bound_to_a_strength_it_runs_like_an_upscaler_of_scale_one():
    bound = CleanupAt(_trained_looking(), 1.0)
    image = torch.rand(1, 3, 10, 10)
    out = bound(image)
    assert bound.scale == 1 and out.shape == image.shape and out.min() >= 0 and out.max() <= 1


def test_a_chroma_network_keeps_the_luma_and_changes_the_colour():
    network = _trained_looking(TINY_CHROMA)
    image = torch.rand(2, 3, 17, 12)
    with torch.no_grad():
        out = network(image, 1.0)
    weights = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)  # BT.601, as the colour fix and PSNR-Y
    assert torch.allclose((out * weights).sum(1), (image * weights).sum(1), atol=1e-6)
    assert (out - image).abs().max() > 1e-2


def test_a_chroma_network_leaves_a_grey_image_grey_and_colours_only_near_colour():
    network = _trained_looking(TINY_CHROMA)
    grey = torch.rand(1, 1, 24, 24).expand(1, 3, 24, 24).contiguous()
    with torch.no_grad():
        assert torch.equal(network(grey, 1.0), grey)  # no colour to clean: none is invented
        partly = grey.clone()
        partly[:, 0, :, :6] += 0.1  # a red stripe on the left
        change = (network(partly, 1.0) - partly).abs().amax(dim=1)[0]
    assert change[:, :6].max() > 1e-3  # colour is cleaned where it is
    assert change[:, 6 + 4:].max() == 0  # and nothing further than its reach from any


@pytest.mark.parametrize("config", [TINY_RESIZE, TINY_CHROMA], ids=["resize", "chroma"])
def test_a_resize_network_exports_to_onnx_and_runs_the_same(tmp_path, config):
    pytest.importorskip("onnxruntime")
    from perceptual_sr.inference.onnx_pipeline import OnnxCleanup, export_cleanup_onnx

    network = _trained_looking(config)
    exported = OnnxCleanup(export_cleanup_onnx(network, tmp_path / "m.cleanup.onnx"))
    image = torch.rand(1, 3, 13, 22)
    assert exported.config == config
    assert torch.allclose(exported(image, 0.6), network(image, 0.6).clamp(0, 1), atol=1e-5)


def _redesign_tool():
    import runpy
    from pathlib import Path

    return runpy.run_path(str(Path(__file__).resolve().parent.parent / "tools" / "cleanup_redesign.py"))


def test_a_resize_start_copies_a_shuffle_network_and_averages_its_four_phases():
    redesigned = _redesign_tool()["redesigned"]
    shuffle = _trained_looking()
    with torch.no_grad():  # the same weights in all four phases of every output channel
        shuffle.up[0].weight.copy_(shuffle.up[0].weight[::4].repeat_interleave(4, dim=0))
        shuffle.up[0].bias.copy_(shuffle.up[0].bias[::4].repeat_interleave(4))
    resize = redesigned(shuffle, upsample="resize")
    assert resize.config == TINY_RESIZE
    assert torch.equal(resize.up[1].weight, shuffle.up[0].weight[::4])
    assert torch.equal(resize.up[1].bias, shuffle.up[0].bias[::4])
    kept = {k: v for k, v in shuffle.state_dict().items() if not k.startswith("up.")}
    assert all(torch.equal(resize.state_dict()[k], v) for k, v in kept.items())
    # On a flat input both then compute the same thing: one value per channel, resized or shuffled.
    flat = torch.full((1, 3, 12, 12), 0.3)
    assert torch.allclose(resize(flat, 1.0), shuffle(flat, 1.0), atol=1e-6)
    with pytest.raises(ValueError, match="cannot become a shuffle"):
        redesigned(resize, upsample="shuffle")


def test_a_chroma_start_keeps_every_weight_and_drops_the_corrections_luma():
    rgb = _trained_looking(TINY_RESIZE)
    chroma = _redesign_tool()["redesigned"](rgb, corrects="chroma")
    assert chroma.config == TINY_CHROMA
    assert all(torch.equal(chroma.state_dict()[k], v) for k, v in rgb.state_dict().items())
    image = torch.rand(1, 3, 11, 9)
    with torch.no_grad():
        change, rgb_change = chroma(image, 1.0) - image, rgb(image, 1.0) - image
    luma = (rgb_change * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)
    assert torch.allclose(change, rgb_change - luma, atol=1e-6)


def test_the_channel_oracle_mixes_one_images_luma_with_anothers_colour():
    import runpy
    from pathlib import Path

    import numpy as np
    from PIL import Image

    mixed = runpy.run_path(str(Path(__file__).resolve().parent.parent / "tools" / "channel_oracle.py"))["mixed"]
    rng = np.random.default_rng(0)
    a, b = (rng.integers(100, 156, (12, 10, 3), dtype=np.uint8) for _ in range(2))  # no colour out of gamut
    planes = [np.asarray(Image.fromarray(image).convert("YCbCr")).astype(int) for image in (mixed(a, b), a, b)]
    assert np.abs(planes[0][..., 0] - planes[1][..., 0]).max() <= 1  # a's luma
    assert np.abs(planes[0][..., 1:] - planes[2][..., 1:]).max() <= 1  # b's colour


def test_the_colour_block_score_sees_colour_squares_and_not_a_smooth_photo():
    import runpy
    from pathlib import Path

    import numpy as np

    score = runpy.run_path(str(Path(__file__).resolve().parent.parent / "tools" / "colour_blocks.py"))[
        "colour_block_score"]
    y, x = np.mgrid[0:128, 0:128]
    smooth = np.stack([128 + 90 * np.sin(x / 9.3), 128 + 90 * np.cos(y / 7.1), 128 + 60 * np.sin((x + y) / 11.7)],
                      axis=2).round().astype(np.uint8)
    blocky = smooth.copy()
    blocky[..., 0] = 128 + 90 * np.sin(x // 16 * 16 / 9.3)  # red in 16-pixel squares
    assert abs(score(smooth, 16) - 1.0) < 0.15 and score(blocky, 16) > 3
