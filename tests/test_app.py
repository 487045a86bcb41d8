"""The demo app end to end: `app.py` in a subprocess, driven by gradio_client and by headless Chromium.

The app is served with a tiny random model written by `save_pretrained` (nothing is downloaded).
The browser test needs Playwright (pip) and a Chromium binary (Debian: `apt-get install chromium`);
without them it skips and says why. Screenshots go to $PERCEPTUAL_SR_ARTIFACTS (default: a folder in
the system's temporary directory; nothing is written into the repository).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from perceptual_sr import PerceptualSR, SRConfig
from perceptual_sr.inference.pipeline import TWIN_SUBFOLDER, SRPipeline

REPO = Path(__file__).resolve().parent.parent
APP = REPO / "app.py"
ARTIFACTS = Path(os.environ.get("PERCEPTUAL_SR_ARTIFACTS") or Path(tempfile.gettempdir()) / "perceptual_sr_artifacts")
MAX_PIXELS = 200 * 200  # small, so the "too large" path is cheap to hit; all examples fit
STARTUP_TIMEOUT_S = 180


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _app_env(tmp: Path, **extra: str) -> dict[str, str]:
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "GRADIO_ANALYTICS_ENABLED": "False",
        "GRADIO_TEMP_DIR": str(tmp / "gradio-tmp"),
        "GRADIO_EXAMPLES_CACHE": str(tmp / "examples-cache"),
        "GRADIO_CACHE_MODE": "lazy",  # don't upscale all examples at start-up
        "PYTHONUNBUFFERED": "1",
    }
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    """`python app.py` with a tiny random model on a free port; yields its URL."""
    tmp = tmp_path_factory.mktemp("app")
    model_dir = tmp / "tiny-model"
    torch.manual_seed(0)
    PerceptualSR(SRConfig(channels=8, residual_blocks=1)).save_pretrained(model_dir)
    for subfolder in (TWIN_SUBFOLDER, "real-photo", "real-photo-pixel-twin"):  # each its own init
        PerceptualSR(SRConfig(channels=8, residual_blocks=1)).save_pretrained(model_dir / subfolder)
    port = _free_port()
    log_path = tmp / "app.log"
    env = _app_env(tmp, PERCEPTUAL_SR_MODEL=str(model_dir), GRADIO_SERVER_PORT=str(port),
                   GRADIO_SERVER_NAME="127.0.0.1", PERCEPTUAL_SR_MAX_PIXELS=str(MAX_PIXELS))
    with open(log_path, "w") as log:
        process = subprocess.Popen([sys.executable, str(APP)], cwd=tmp, env=env, stdout=log,
                                   stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while True:
            if process.poll() is not None:
                pytest.fail(f"app.py exited with {process.returncode}:\n{log_path.read_text()}")
            try:
                with urllib.request.urlopen(url, timeout=5) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"app.py did not serve {url} in {STARTUP_TIMEOUT_S} s:\n{log_path.read_text()}")
            time.sleep(0.5)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def photo_file(make_photo):
    """`photo_file(path, (width, height), mode="RGB")`: a synthetic photo saved to `path`; RGBA has a transparent hole."""
    def write(path: Path, size: tuple[int, int], mode: str = "RGB") -> Path:
        width, height = size
        image = Image.fromarray(make_photo(width, height))
        if mode == "RGBA":
            alpha = np.full((height, width), 255, np.uint8)
            alpha[height // 4: height // 2, width // 4: width // 2] = 0
            image.putalpha(Image.fromarray(alpha))
        image.save(path)
        return path

    return write


def _load_app_module():
    spec = importlib.util.spec_from_file_location("perceptual_sr_app", APP)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_app_without_weights_exits_with_one_clear_line(tmp_path, monkeypatch, capsys):
    app = _load_app_module()
    monkeypatch.setenv("PERCEPTUAL_SR_MODEL", str(tmp_path / "no-such-model"))
    with pytest.raises(SystemExit) as exited:
        app.main()
    message = str(exited.value.code)
    assert message.startswith("app.py: ") and "no-such-model" in message and "\n" not in message
    assert "Running on" not in capsys.readouterr().out


@pytest.mark.parametrize("name, value", [("GRADIO_SERVER_PORT", "http"), ("GRADIO_SERVER_PORT", "70000"),
                                         ("GRADIO_SERVER_PORT", "0"), ("PERCEPTUAL_SR_MAX_PIXELS", "0"),
                                         ("GRADIO_SHARE", "maybe"), ("PERCEPTUAL_SR_DEVICE", "banana")])
def test_app_rejects_bad_settings_in_one_line(monkeypatch, name, value):
    app = _load_app_module()
    monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit, match=f"app.py: {name} must be"):
        app.main()


@pytest.mark.slow
def test_upscale_endpoint_from_gradio_client(photo_file, app_url, tmp_path):
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    client = Client(app_url, verbose=False, download_files=str(tmp_path / "downloads"))
    source = photo_file(tmp_path / "rgba.png", (40, 24), mode="RGBA")
    (before, after), full, summary, crops, cleanup = client.predict(handle_file(source), "histogram", 0, 1.0,
                                                                    api_name="/upscale")
    assert cleanup == 0.0  # what auto chose for a clean PNG

    output = Image.open(full)
    assert output.size == (160, 96) and output.mode == "RGBA"
    alpha = np.asarray(output)[..., 3]
    assert alpha[30, 50] == 0 and alpha[0, 0] == alpha[90, 150] == 255  # the hole stays transparent
    assert Image.open(after).size == Image.open(before).size == (160, 96)
    assert Image.open(before).mode == "RGBA" and Path(full).suffix == ".png"
    assert "40 x 24 → 160 x 96 px" in summary and "s** on CPU" in summary and "detail 1" in summary
    assert [Image.open(crop).size for crop in crops] == [(160, 96)] * 2  # smaller than the 256-px crop
    _, fidelity, summary, _, _ = client.predict(handle_file(source), "histogram", 0, 0.0, api_name="/upscale")
    assert "detail 0" in summary
    assert not np.array_equal(np.asarray(Image.open(fidelity)), np.asarray(output))

    corrupt = tmp_path / "holiday.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0 this is not really a JPEG")
    with pytest.raises(AppError, match="Could not read holiday.jpg as an image"):
        client.predict(handle_file(corrupt), "histogram", 0, api_name="/upscale")

    large = photo_file(tmp_path / "large.png", (256, 256))
    with pytest.raises(AppError, match=r"256 x 256 pixels .*up to 0\.04 MP"):
        client.predict(handle_file(large), "off", 0, api_name="/upscale")

    with pytest.raises(AppError, match="'sepia'.* not in the list of choices"):
        client.predict(handle_file(source), "sepia", 0, api_name="/upscale")


def _chromium() -> str | None:
    for candidate in (os.environ.get("CHROMIUM_EXECUTABLE"), "chromium", "chromium-browser", "google-chrome"):
        if candidate and (found := shutil.which(candidate)):
            return found
    return None


# Flags for a root user in a container on a closed network (background networking hangs there).
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage"]


@pytest.fixture()
def page(tmp_path):
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("browser test needs the `playwright` Python package (pip install playwright)")
    executable = _chromium()
    if executable is None:
        pytest.skip("browser test needs Chromium (apt-get install chromium, or set CHROMIUM_EXECUTABLE)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS)
        context = browser.new_context(accept_downloads=True, viewport={"width": 1280, "height": 1000})
        try:
            yield context.new_page()
        finally:
            context.close()
            browser.close()


@pytest.mark.slow
@pytest.mark.browser
def test_browser_upload_upscale_and_download(photo_file, app_url, page, tmp_path):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    source = photo_file(tmp_path / "gradient.png", (48, 32))
    page.goto(app_url)
    page.locator("#input-image input[type=file]").set_input_files(str(source))
    page.locator("#input-image img").first.wait_for(timeout=30_000)
    page.locator("#upscale-button").click()
    link = page.locator("#result-file a[download]").first
    link.wait_for(timeout=120_000)
    with page.expect_download() as download_info:
        link.click()
    downloaded = tmp_path / download_info.value.suggested_filename
    download_info.value.save_as(downloaded)
    assert downloaded.name == "gradient_x4.png"
    assert Image.open(downloaded).size == (192, 128)
    assert "48 x 32 → 192 x 128 px" in page.locator("#result-summary").inner_text()
    # The slider and the 1:1 crop show light WebP images; the download above is the full PNG.
    for viewer in ("#result-slider", "#detail-crop"):
        images = page.locator(f"{viewer} img")
        images.first.wait_for(timeout=30_000)
        page.wait_for_function(f"[...document.querySelectorAll('{viewer} img')].every(e => e.complete && e.naturalWidth)")
        shown = images.evaluate_all("els => els.map(e => [e.currentSrc, e.naturalWidth, e.naturalHeight])")
        assert len(shown) == 2 and all(".webp" in src and (w, h) == (192, 128) for src, w, h in shown), shown
    page.screenshot(path=str(ARTIFACTS / "demo_upload.png"), full_page=True)

    # Fidelity <-> detail: at 0 the pixel-loss twin answers, a different image.
    slider_value = page.locator("#detail-slider input[type=number]")
    slider_value.fill("0")
    slider_value.press("Enter")
    page.locator("#upscale-button").click()
    page.locator("#result-summary", has_text="detail 0").wait_for(timeout=120_000)
    link = page.locator("#result-file a[download]").first
    with page.expect_download() as download_info:
        link.click()
    fidelity = tmp_path / ("fidelity_" + download_info.value.suggested_filename)
    download_info.value.save_as(fidelity)
    assert Image.open(fidelity).size == (192, 128)
    assert not np.array_equal(np.asarray(Image.open(fidelity)), np.asarray(Image.open(downloaded)))
    page.screenshot(path=str(ARTIFACTS / "demo_detail0.png"), full_page=True)

    # A bundled example: clicking it loads the input and (lazily cached) result.
    page.get_by_role("button", name="animal_cat.jpg").or_(page.locator("img[src*='animal_cat']")).first.click()
    page.locator("#result-summary", has_text="225 x 150 → 900 x 600 px").wait_for(timeout=120_000)
    page.locator("#result-slider img").first.wait_for(timeout=30_000)
    page.screenshot(path=str(ARTIFACTS / "demo_example.png"), full_page=True)


@pytest.mark.slow
def test_prediction_function_takes_tiny_images_every_tile_size_and_detail(photo_file, tmp_path):
    from perceptual_sr.app.demo import MAX_TILE_SIZE, Upscaler

    torch.manual_seed(0)
    config = SRConfig(channels=4, residual_blocks=1)
    model = SRPipeline({"": PerceptualSR(config), TWIN_SUBFOLDER: PerceptualSR(config)})
    predict = Upscaler(model, output_dir=tmp_path / "out")
    for width, height in ((1, 1), (2, 5), (8, 8), (1, 30)):
        source = photo_file(tmp_path / f"icon{width}x{height}.png", (width, height))
        (before, after), full, summary, _ = predict(str(source), "luma", 0, 0.5)
        assert Image.open(full).size == (4 * width, 4 * height) and "detail 0.5" in summary
    source = photo_file(tmp_path / "photo.png", (70, 40))
    for tile in range(32, 129, 32):  # every tile size the slider offers below the image size
        _, full, summary, _ = predict(str(source), "off", tile, 1.0)
        assert Image.open(full).size == (280, 160) and f"{tile} px tiles" in summary
    assert MAX_TILE_SIZE % 32 == 0


@pytest.mark.slow
def test_slider_gets_light_previews_and_the_download_every_pixel(photo_file, tmp_path, monkeypatch):
    from perceptual_sr.app import demo
    monkeypatch.setattr(demo, "PREVIEW_MAX_SIDE", 256)  # a small cap keeps the test fast; the rule is the same
    model = PerceptualSR(SRConfig(channels=4, residual_blocks=1))
    predict = demo.Upscaler(model, output_dir=tmp_path / "out")
    source = photo_file(tmp_path / "wide.png", (120, 60))
    (before, after), full, _, _ = predict(str(source), "luma", 0, 1.0)
    assert Image.open(full).size == (480, 240) and Path(full).suffix == ".png"
    for preview in (before, after):
        assert Image.open(preview).format == "WEBP" and Image.open(preview).size == (256, 128)
    # 16-bit greyscale: the "before" preview keeps its tones instead of clipping to white.
    grey = np.tile(np.linspace(0, 65535, 64).astype(np.uint16), (32, 1))
    path = tmp_path / "grey16.png"
    Image.fromarray(grey).save(path)
    (before, after), full, _, _ = predict(str(path), "off", 0, 1.0)
    shown = np.asarray(Image.open(before).convert("L"), dtype=float)
    assert shown.mean() == pytest.approx(127, abs=12) and Image.open(full).mode in ("I;16", "I")


@pytest.mark.slow
def test_slider_payload_for_a_1024px_photo_is_under_2_mb(tmp_path):
    from perceptual_sr.app import demo
    photo = Image.open(demo.example_paths()[0]).convert("RGB").resize((1024, 1024), Image.Resampling.BICUBIC)
    photo.save(tmp_path / "photo.png")
    model = PerceptualSR(SRConfig(channels=4, residual_blocks=1, upsampler="resize-conv", global_skip="bicubic"))
    predict = demo.Upscaler(model, output_dir=tmp_path / "out")
    (before, after), full, _, crops = predict(str(tmp_path / "photo.png"), "luma", 0, 1.0)
    assert Image.open(full).size == (4096, 4096) and Image.open(full).format == "PNG"
    assert [Image.open(path).size for path in (before, after)] == [(2048, 2048)] * 2
    assert [Image.open(path).size for path in crops] == [(demo.CROP_SIDE, demo.CROP_SIDE)] * 2
    payload = sum(Path(path).stat().st_size for path in (before, after, *crops))
    assert payload < 2_000_000, payload


def test_detail_crop_is_the_same_window_of_both_and_the_busiest_one(tmp_path):
    from perceptual_sr.app import demo
    flat = np.full((100, 120, 3), 128, np.uint8)
    flat[60:80, 10:40] = np.random.default_rng(0).integers(0, 256, (20, 30, 3))  # the only texture
    Image.fromarray(flat).save(tmp_path / "flat.png")
    model = PerceptualSR(SRConfig(channels=4, residual_blocks=1))
    predict = demo.Upscaler(model, output_dir=tmp_path / "out")
    _, full, _, (bicubic_crop, crop) = predict(str(tmp_path / "flat.png"), "off", 0, 1.0)
    y, x = demo._busiest_window(Image.fromarray(flat), demo.CROP_SIDE // 4)
    assert 60 - 64 < y <= 60 and 10 - 64 < x <= 10  # the 64-px input window covers the texture
    window = np.asarray(Image.open(full))[4 * y:4 * y + 256, 4 * x:4 * x + 256]
    assert np.array_equal(np.asarray(Image.open(crop).convert("RGB")), window)  # lossless, 1:1
    assert Image.open(bicubic_crop).size == Image.open(crop).size == (256, 256)


def test_prediction_runs_under_spaces_gpu_when_spaces_is_installed(monkeypatch):
    import types

    from perceptual_sr.app import demo
    decorated = []
    fake = types.ModuleType("spaces")
    fake.GPU = lambda function: decorated.append(function) or function
    monkeypatch.setitem(sys.modules, "spaces", fake)
    demo.build_demo(PerceptualSR(SRConfig(channels=4, residual_blocks=1)), examples_dir=None)
    assert [function.__name__ for function in decorated] == ["predict"]
    monkeypatch.setitem(sys.modules, "spaces", None)  # not installed: the function itself
    assert demo.on_zero_gpu(len) is len


def test_automatic_cleanup_is_shown_and_a_manual_strength_is_used(photo_file, tmp_path):
    from perceptual_sr.app.demo import Upscaler
    from perceptual_sr.inference.pipeline import REAL_PHOTO_SUBFOLDER

    torch.manual_seed(0)
    config = SRConfig(channels=4, residual_blocks=1)
    sets = {name: PerceptualSR(config) for name in ("", TWIN_SUBFOLDER, REAL_PHOTO_SUBFOLDER, "real-photo-pixel-twin")}
    predict = Upscaler(SRPipeline(sets), output_dir=tmp_path / "out")
    png = photo_file(tmp_path / "clean.png", (40, 30))
    jpeg = tmp_path / "web.jpg"
    Image.open(png).convert("RGB").save(jpeg, quality=50)
    _, _, summary, _ = predict(str(png), "luma", 0, 1.0)
    assert "cleanup 0.00 (auto: not a JPEG" in summary
    _, automatic, summary, _ = predict(str(jpeg), "luma", 0, 1.0)
    assert "cleanup 1.00 (auto: JPEG quality ~50" in summary
    _, manual, summary, _ = predict(str(jpeg), "luma", 0, 1.0, 1.0, False)
    assert "cleanup 1" in summary and np.array_equal(np.asarray(Image.open(manual)), np.asarray(Image.open(automatic)))
    _, untouched, _, _ = predict(str(jpeg), "luma", 0, 1.0, 0.0, False)
    assert not np.array_equal(np.asarray(Image.open(untouched)), np.asarray(Image.open(automatic)))


@pytest.mark.slow
def test_a_port_in_use_is_one_clear_line(monkeypatch):
    import socket

    app = _load_app_module()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        monkeypatch.setenv("GRADIO_SERVER_PORT", str(taken.getsockname()[1]))
        monkeypatch.setenv("GRADIO_CACHE_MODE", "lazy")
        with pytest.raises(SystemExit, match="app.py: cannot serve on 127.0.0.1:.*set GRADIO_SERVER_PORT"):
            app.main()


def test_examples_larger_than_the_input_limit_are_left_out():
    from perceptual_sr.app.demo import EXAMPLES_DIR, _fits, example_paths

    sizes = {path.name: Image.open(path).size for path in example_paths(EXAMPLES_DIR)}
    small = min(width * height for width, height in sizes.values())
    kept = [path.name for path in example_paths(EXAMPLES_DIR) if _fits(path, small)]
    assert kept and len(kept) < len(sizes)
    assert all(sizes[name][0] * sizes[name][1] <= small for name in kept)


def test_the_app_gives_smaller_output_sizes(photo_file, tmp_path):
    from perceptual_sr.app.demo import Upscaler

    torch.manual_seed(0)
    predict = Upscaler(PerceptualSR(SRConfig(channels=4, residual_blocks=1)), output_dir=tmp_path / "out")
    source = photo_file(tmp_path / "photo.png", (40, 30))
    _, full, summary, (bicubic_crop, crop) = predict(str(source), "luma", 0, 1.0, 0.0, True, 2)
    assert Image.open(full).size == (80, 60) and "40 x 30 → 80 x 60 px" in summary and "(x2," in summary
    assert Image.open(bicubic_crop).size == Image.open(crop).size
    import gradio

    with pytest.raises(gradio.Error, match="whole factor"):
        predict(str(source), "luma", 0, 1.0, 0.0, True, 2.5)


@pytest.mark.slow
@pytest.mark.browser
def test_on_a_phone_the_upscale_button_is_on_the_first_screen(app_url, page):
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(app_url)
    button = page.locator("#upscale-button")
    button.wait_for(timeout=60_000)
    box = button.bounding_box()
    assert box is not None and box["y"] + box["height"] <= 844, box
    caption = page.locator("#detail-crop-caption")
    assert caption.is_visible() and "1:1 detail" in caption.inner_text()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "demo_phone.png"))


@pytest.mark.slow
@pytest.mark.browser
def test_the_cleanup_slider_is_greyed_out_while_the_automatic_choice_is_on(app_url, page):
    page.goto(app_url)
    strength = page.locator("#cleanup-slider input[type=range]")
    strength.wait_for(timeout=60_000)
    assert strength.is_disabled()  # the automatic choice would override it
    page.locator("#cleanup-auto input[type=checkbox]").uncheck()
    page.wait_for_function("!document.querySelector('#cleanup-slider input[type=range]').disabled", timeout=10_000)
    assert strength.is_enabled()


@pytest.mark.slow
@pytest.mark.browser
def test_after_an_upscale_the_strength_slider_shows_the_automatic_choice(app_url, page, make_photo, tmp_path):
    source = tmp_path / "messenger.jpg"
    Image.fromarray(make_photo(48, 32)).save(source, quality=50)  # quality 75 and below: the full strength
    page.goto(app_url)
    page.locator("#input-image input[type=file]").set_input_files(str(source))
    page.locator("#input-image img").first.wait_for(timeout=30_000)
    page.locator("#upscale-button").click()
    page.locator("#result-summary", has_text="cleanup 1.00 (auto: JPEG quality ~50").wait_for(timeout=120_000)
    page.wait_for_function("document.querySelector('#cleanup-slider input[type=number]').value === '1'",
                           timeout=10_000)
    assert page.locator("#cleanup-slider input[type=range]").is_disabled()


def test_the_slider_shows_the_strength_the_upscale_ran_at_only_while_automatic():
    import gradio as gr

    from perceptual_sr.app.demo import _show_automatic_strength

    assert _show_automatic_strength(True, 0.75).value == 0.75
    assert _show_automatic_strength(False, 0.75) == gr.skip()  # a manual choice is left alone
    assert _show_automatic_strength(True, None) == gr.skip()  # nothing ran yet


@pytest.mark.slow
@pytest.mark.browser
def test_on_a_phone_the_result_is_in_view_after_upscale_and_the_controls_follow_the_photo(
        app_url, page, make_photo, tmp_path):
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(app_url)
    button = page.locator("#upscale-button")
    button.wait_for(timeout=60_000)
    assert button.inner_text().strip() == "Upscale 4x"
    page.get_by_text("Advanced").click()
    page.locator("#outscale label", has_text="2x").click()  # the output size names the button
    page.wait_for_function("document.querySelector('#upscale-button').innerText.trim() === 'Upscale 2x'",
                           timeout=10_000)
    page.locator("#outscale label", has_text="4x").click()
    first = tmp_path / "first.jpg"
    Image.fromarray(make_photo(48, 32)).save(first, quality=50)
    page.locator("#input-image input[type=file]").set_input_files(str(first))
    page.locator("#input-image img").first.wait_for(timeout=30_000)
    button.click()
    summary = page.locator("#result-summary", has_text="cleanup 1.00")
    summary.wait_for(timeout=120_000)
    # The result was 2.5 screens below the button: the page scrolls to it.
    page.wait_for_function("(() => { const r = document.querySelector('#result-slider').getBoundingClientRect();"
                           " return r.top < innerHeight && r.bottom > 0; })()", timeout=10_000)
    page.wait_for_function("document.querySelector('#cleanup-slider input[type=number]').value === '1'",
                           timeout=10_000)
    # A new photo has not been measured: the strength shown goes back to rest, the switch to automatic.
    second = tmp_path / "second.png"
    Image.fromarray(make_photo(40, 40)).save(second)
    page.locator("#input-image input[type=file]").set_input_files(str(second))
    page.wait_for_function("document.querySelector('#cleanup-slider input[type=number]').value === '0'",
                           timeout=10_000)
    assert page.locator("#cleanup-auto input[type=checkbox]").is_checked()


@pytest.mark.slow
@pytest.mark.browser
def test_after_an_example_the_strength_slider_shows_its_automatic_choice(app_url, page):
    import re

    page.goto(app_url)
    page.locator("img[src*='animal_cat']").first.click()  # cached at start-up, as on the Space
    summary = page.locator("#result-summary", has_text="(auto:")
    summary.wait_for(timeout=120_000)
    chosen = re.search(r"cleanup (\d+\.\d+) \(auto:", summary.inner_text()).group(1)
    page.wait_for_function(f"Number(document.querySelector('#cleanup-slider input[type=number]').value) === "
                           f"{float(chosen)}", timeout=10_000)
