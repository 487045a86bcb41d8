"""Regenerate the demo's example photos from public-domain / CC0 sources installed with the test deps.

    python examples/make_examples.py

Sources (see LICENSES.md): scikit-image's bundled sample data, matplotlib's sample data, and a
screenshot drawn here with Pillow's bundled font. Each example is cropped and/or downscaled to a
small low-resolution input (longest side <= 240 px) so the repository stays small and the 4x
results compute in seconds on a CPU. Never add benchmark test images (Set5/Set14/BSD100) here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

HERE = Path(__file__).resolve().parent


def _skimage(name: str) -> Image.Image:
    import skimage.data

    return Image.fromarray(getattr(skimage.data, name)())


def _matplotlib(name: str) -> Image.Image:
    from matplotlib import cbook

    with cbook.get_sample_data(name) as file:
        return Image.open(file).convert("RGB")


def _shrink(image: Image.Image, longest_side: int) -> Image.Image:
    """Antialiased downscale so the longest side is `longest_side` (a plausible low-res input)."""
    factor = longest_side / max(image.size)
    size = (round(image.width * factor), round(image.height * factor))
    return image.resize(size, Image.Resampling.LANCZOS)


def screenshot() -> Image.Image:
    """A small editor-window screenshot; the corners outside its rounded frame are transparent (RGBA)."""
    width, height = 240, 150
    window = Image.new("RGBA", (width, height), (0, 0, 0, 0))
    draw = ImageDraw.Draw(window)
    draw.rounded_rectangle((0, 0, width - 1, height - 1), radius=10, fill=(250, 250, 252, 255),
                           outline=(190, 190, 200, 255))
    draw.rounded_rectangle((0, 0, width - 1, 24), radius=10, fill=(228, 230, 236, 255))
    draw.rectangle((0, 14, width - 1, 24), fill=(228, 230, 236, 255))
    for index, colour in enumerate([(237, 106, 94), (245, 191, 79), (98, 197, 84)]):
        x = 12 + 16 * index
        draw.ellipse((x - 5, 7, x + 5, 17), fill=colour + (255,))
    title = ImageFont.load_default(size=11)
    body = ImageFont.load_default(size=10)
    draw.text((78, 6), "notes.txt - Editor", font=title, fill=(60, 60, 70, 255))
    lines = [
        "Perceptual losses (Johnson 2016)",
        "- train on VGG-16 relu2_2 features",
        "- 4x upscaling: 72 -> 288 px",
        "- total variation weight 1e-6",
        "def upscale(image, tile_size=256):",
        "    return model(image)  # x4",
    ]
    for row, line in enumerate(lines):
        colour = (30, 90, 170, 255) if line.startswith(("def", "    ")) else (35, 35, 40, 255)
        draw.text((10, 32 + 17 * row), line, font=body, fill=colour)
    draw.rounded_rectangle((170, 124, 228, 142), radius=4, fill=(52, 120, 246, 255))
    draw.text((185, 127), "Save", font=body, fill=(255, 255, 255, 255))
    return window


def build() -> dict[str, Image.Image]:
    astronaut = _skimage("astronaut")  # 512x512, face in the upper middle
    text = _skimage("text")  # 448x172 greyscale
    return {
        "face_astronaut.png": _shrink(astronaut.crop((140, 20, 360, 240)), 160),
        "face_grace_hopper.jpg": _shrink(_matplotlib("grace_hopper.jpg"), 200),
        "animal_cat.jpg": _shrink(_skimage("chelsea"), 225),
        "food_coffee.jpg": _shrink(_skimage("coffee"), 240),
        "structure_rocket_launch.jpg": _shrink(_skimage("rocket"), 240),
        "texture_brick_wall.png": _shrink(_skimage("brick").crop((0, 0, 320, 320)), 160),
        "text_handwriting.png": _shrink(text, 224),
        "screenshot_editor.png": screenshot(),
    }


def main() -> None:
    for name, image in build().items():
        path = HERE / name
        if path.suffix == ".jpg":
            image.convert("RGB").save(path, quality=92)
        else:
            image.save(path, optimize=True)
        print(f"{path.name}: {image.width}x{image.height} {image.mode}, {path.stat().st_size // 1024} KiB")


if __name__ == "__main__":
    main()
