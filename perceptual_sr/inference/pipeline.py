"""The upscaling pipeline: the named weight sets of one model folder, blended along named axes.

A model folder (or Hub repo) holds one network architecture and up to several trained weight
sets, each a `save_pretrained` folder (`config.json` + `model.safetensors`):

    model.safetensors, config.json   the default: the feature-loss model (detail 1, cleanup 0)
    pixel-twin/                      the same network fine-tuned on pixel loss (detail 0, cleanup 0)
    real-photo/                      the default fine-tuned on degraded photos (detail 1, cleanup 1)
    real-photo-pixel-twin/           the twin fine-tuned on degraded photos (detail 0, cleanup 1)

Each set sits at a corner of the blend space, named by its coordinates on the axes (`WEIGHT_SETS`).
`SRPipeline` loads them, blends them by network interpolation (Wang et al., ESRGAN section 3.4,
and "Deep Network Interpolation", CVPR 2019) at the point a caller asks for, keeps the
per-device inference network of each recent blend, and upscales images through `inference`.
After diffusers' pipelines: the network (`model.PerceptualSR`) maps tensors to tensors; the
pipeline owns the components, the blends, the devices and the images.
"""

from __future__ import annotations

import hashlib
import tempfile
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from huggingface_hub import snapshot_download
from huggingface_hub.errors import HfHubHTTPError, HFValidationError, LocalEntryNotFoundError
from torch import nn

from perceptual_sr.hub import model_card, weights
from perceptual_sr.inference import auto_cleanup
from perceptual_sr.inference import upscale as inference
from perceptual_sr.inference.auto_cleanup import InputQuality
from perceptual_sr.networks import inference_network
from perceptual_sr.networks.upscaler import PerceptualSR, check_model_folder
from perceptual_sr.utils.atomic_write import atomic_entries
from perceptual_sr.utils.image_io import check_outscale, open_image
from perceptual_sr.utils.runtime import choose_device

# Axes of the blend space and the value each takes when a caller does not say.
AXES = {"detail": 1.0, "cleanup": 0.0}
# Where each weight set lives in a model folder ("" = the folder itself) and its corner of the
# blend space. A folder needs the default; the others are optional and enable their axis (an axis
# needs a weight set at each of its ends for every value the other axes can take).
WEIGHT_SETS: dict[str, dict[str, float]] = {
    "": {"detail": 1.0, "cleanup": 0.0},
    "pixel-twin": {"detail": 0.0, "cleanup": 0.0},
    "real-photo": {"detail": 1.0, "cleanup": 1.0},
    "real-photo-pixel-twin": {"detail": 0.0, "cleanup": 1.0},
}
TWIN_SUBFOLDER = "pixel-twin"
REAL_PHOTO_SUBFOLDER = "real-photo"
# Blends kept ready (each is a full network copy plus its inference networks): the app's slider
# visits a handful of values; eight covers them without growing without bound.
MAX_CACHED_BLENDS = 8
_WEIGHT_FILES = ["config.json", "model.safetensors"]


class SRPipeline:
    """Weight sets of one architecture, blended on request, with images in and out.

    `SRPipeline.from_pretrained()` loads the bundled default; `.upscale(image, detail=0.5)`
    upscales a PIL image, path, numpy array or tensor and returns the same kind.
    Safe for concurrent callers: the weight sets are never changed after loading, and blends
    and their inference networks are built under a lock and then only read.
    """

    def __init__(self, weight_sets: Mapping[str, PerceptualSR]) -> None:
        if "" not in weight_sets:
            raise ValueError("a pipeline needs the default weight set (key \"\")")
        unknown = sorted(set(weight_sets) - set(WEIGHT_SETS))
        if unknown:
            raise ValueError(f"unknown weight sets {unknown}; known: {sorted(WEIGHT_SETS)}")
        self.config = weight_sets[""].config
        for name, network in weight_sets.items():
            if network.config != self.config:
                raise ValueError(f"weight set {name!r} is a {network.config}, but the default is a {self.config}; "
                                 "all weight sets of a model must share one architecture")
        # CPU copies, detached from the caller's modules: later edits to those never reach a blend.
        self._states = {name: _cpu_state(network) for name, network in weight_sets.items()}
        self.axes = _spanned_axes(set(self._states))
        self._lock = threading.Lock()
        self._blends: OrderedDict[tuple[float, ...], PerceptualSR] = OrderedDict()
        self._networks: dict[tuple[tuple[float, ...], str, bool], nn.Module] = {}
        # What the loaded folder's card recorded (model_card.carried_from), kept by save_pretrained.
        self.card_record: dict[str, Any] = {}

    # --- loading and saving ---------------------------------------------------------------------

    @classmethod
    def from_pretrained(cls, repo_or_folder: str | Path | None = None, **hub_kwargs: Any) -> "SRPipeline":
        """Load a model folder, a Hub repo id (downloaded once, weight files only), or (None) the
        bundled default. `hub_kwargs` (revision, cache_dir, token, local_files_only, ...) go to
        `huggingface_hub.snapshot_download`."""
        folder = _local_folder(repo_or_folder, hub_kwargs)
        pipeline = cls(load_weight_sets(folder))
        pipeline.card_record = model_card.carried_from(folder / "README.md")
        return pipeline

    @classmethod
    def from_network(cls, network: PerceptualSR) -> "SRPipeline":
        """A pipeline of one weight set: `network`'s (no blend axes)."""
        return cls({"": network})

    def has_axis(self, axis: str) -> bool:
        """Whether the weight sets span `axis` (e.g. "detail" needs the pixel-loss twin)."""
        return axis in self.axes

    @property
    def scale(self) -> int:
        return self.config.scale

    def fingerprint(self) -> str:
        """A short hash of every weight set: equal for equal weights, different otherwise."""
        digest = hashlib.sha256()
        for set_name, state in sorted(self._states.items()):
            for name, tensor in sorted(state.items()):
                digest.update(f"{set_name}/{name}".encode())
                digest.update(tensor.numpy().tobytes())
        return digest.hexdigest()[:16]

    def save_pretrained(self, folder: str | Path, **card: Any) -> Path:
        """Write every weight set (config and weights) and one card at the top, so
        `from_pretrained(folder)` loads this pipeline as it is. `card`: keywords of
        `model_card.build`; what the loaded model's card recorded (its measured scores, training
        and notes) is kept unless given anew. The model is written to a staging folder and swapped
        in whole: an error or a kill leaves the old model or the new one, never a mix, and files
        of the folder that are not the model's stay."""
        folder = Path(folder)
        card = {**self.card_record, **card, "weight_sets": tuple(name for name in WEIGHT_SETS if name in self._states)}
        owned = {*_WEIGHT_FILES, "README.md", *(name for name in WEIGHT_SETS if name)}
        with atomic_entries(folder, owned) as staging:
            for name, state in self._states.items():
                network = PerceptualSR(self.config)
                network.load_state_dict(state)
                network.save_pretrained(staging / name, model_card_kwargs=card)
                if name:
                    (staging / name / "README.md").unlink()  # one card for the model, at the top
        return folder

    def push_to_hub(self, repo_id: str, *, private: bool | None = None, token: str | None = None,
                    commit_message: str = "Upload perceptual_sr model", **card: Any) -> str:
        """Upload every weight set to the Hub repo `repo_id` (created if needed), with a card whose
        usage names `repo_id` (`card`: more keywords of `model_card.build`); returns its URL."""
        from huggingface_hub import HfApi

        api = HfApi(token=token)
        url = api.create_repo(repo_id, private=private, exist_ok=True)
        with tempfile.TemporaryDirectory() as staging:
            self.save_pretrained(staging, **{**card, "repo_id": repo_id})
            api.upload_folder(repo_id=repo_id, folder_path=staging, commit_message=commit_message)
        return str(url)

    # --- blends ---------------------------------------------------------------------------------

    def network_at(self, **point: float) -> PerceptualSR:
        """The network in eval mode at `point` on the blend axes (e.g. `detail=0.5`; an axis not
        given takes its default). Cached; the same object for the same point: do not modify it."""
        key = self._point(point)
        with self._lock:
            return self._blend(key)

    def _blend(self, key: tuple[float, ...]) -> PerceptualSR:
        network = self._blends.get(key)
        if network is None:
            network = PerceptualSR(self.config)
            network.load_state_dict(blend_states(self._states, dict(zip(AXES, key))))
            network.eval().requires_grad_(False)
            if len(self._blends) >= MAX_CACHED_BLENDS:
                dropped, _ = self._blends.popitem(last=False)
                self._networks = {slot: net for slot, net in self._networks.items() if slot[0] != dropped}
            self._blends[key] = network
        self._blends.move_to_end(key)
        return network

    def inference_network(self, device: torch.device, fast: bool = True, **point: float) -> nn.Module:
        """The network at `point`, ready to run on `device` (see `inference_network.prepare`); cached."""
        key = self._point(point)
        with self._lock:
            slot = (key, str(device), fast)
            network = self._networks.get(slot)
            if network is None:
                network = inference_network.prepare(self._blend(key), device, fast)
                self._networks[slot] = network
            return network

    def _point(self, point: Mapping[str, float]) -> tuple[float, ...]:
        unknown = sorted(set(point) - set(AXES))
        if unknown:
            raise ValueError(f"unknown blend axes {unknown}; this model has {sorted(AXES)}")
        values = []
        for axis, default in AXES.items():
            value = point.get(axis)
            value = default if value is None else check_axis_value(axis, value)
            if value != default and axis not in self.axes:
                missing = _missing_for(axis, set(self._states))
                raise ValueError(f"this model's weight sets cannot blend {axis}, so only {axis}={default:g} is "
                                 f"available, got {value:g}; the folder also needs "
                                 f"{' and '.join(name + '/' for name in missing)}")
            values.append(value)
        return tuple(values)

    # --- images ---------------------------------------------------------------------------------

    def upscale(self, image: Any, *, detail: float | None = None, cleanup: float | str | None = "auto",
                outscale: float | None = None, **options: Any) -> Any:
        """Upscale a PIL image, path, numpy array or tensor by `scale`; returns the same kind.

        detail: 0.0 (the pixel-loss twin: faithful, smoother) ... 1.0 (the feature-loss model:
        sharper, invented texture; the default).
        cleanup: 0.0 (the weights for clean inputs) ... 1.0 (the weights fine-tuned on JPEG
        blocks, noise and blur); "auto" (the default) measures the input (`assess`); a model
        without the real-photo weights always runs at 0.
        outscale: the final size as a multiple of the input's (e.g. 2 or 3 from this x4 model: the
        result resized with Lanczos); None: `scale`. For PIL images, paths and numpy arrays.
        Other options: the fields of `inference.UpscaleOptions`.
        `run` takes the same arguments and also says what it chose.
        """
        return self.run(image, detail=detail, cleanup=cleanup, outscale=outscale, **options).image

    def run(self, image: Any, *, detail: float | None = None, cleanup: float | str | None = "auto",
            outscale: float | None = None, **options: Any) -> "UpscaleResult":
        """`upscale`, returning the image with the settings it ran at (`UpscaleResult`): the
        detail, the cleanup `auto` chose and what it read, and the output scale. Every setting is
        checked before the input is read, and the input before it is measured."""
        settings = inference.UpscaleOptions(**options)
        detail, cleanup, outscale = self.check_settings(detail, cleanup, outscale)
        if isinstance(image, torch.Tensor) and outscale != self.scale:
            raise ValueError("outscale works on PIL images, paths and numpy arrays; resize a tensor result "
                             "with torch.nn.functional.interpolate")
        if isinstance(image, (str, Path)):
            image = open_image(image, max_pixels=settings.max_pixels)
        inference.check_input(image, settings.max_pixels)  # before anything measures it
        quality = self._measure(image) if cleanup == "auto" else None
        if quality is not None:
            cleanup = quality.cleanup
        device = choose_device(settings.device)
        network = self.inference_network(device, settings.fast, detail=detail, cleanup=cleanup)
        result = inference.upscale_with(network, image, settings, device)
        return UpscaleResult(inference.apply_outscale(result, self.scale, outscale), detail, cleanup, quality, outscale)

    def check_settings(self, detail: Any = None, cleanup: Any = "auto",
                       outscale: Any = None) -> tuple[float, float | str, float]:
        """`detail`, `cleanup` and `outscale` checked for this model, with defaults filled in:
        (detail, cleanup or "auto", outscale). ValueError naming the setting otherwise. The one
        place these settings are validated; the CLI and the app ask here."""
        detail = AXES["detail"] if detail is None else check_axis_value("detail", detail)
        if cleanup is None:
            cleanup = AXES["cleanup"]
        elif not (isinstance(cleanup, str) and cleanup == "auto"):
            if isinstance(cleanup, str):
                raise ValueError(f"cleanup must be \"auto\" or a number from 0.0 to 1.0, got {cleanup!r}")
            cleanup = check_axis_value("cleanup", cleanup)
        self._point({"detail": detail, "cleanup": None if cleanup == "auto" else cleanup})  # axes this model has
        outscale = float(self.scale) if outscale is None else check_outscale(outscale)
        return detail, cleanup, outscale

    def network_for(self, image: Any, *, detail: float | None = None,
                    cleanup: float | str | None = "auto") -> PerceptualSR:
        """The network `upscale` would run for `image` (as `network_at`; cleanup "auto" measured on
        it): what evaluation scores per image."""
        detail, cleanup, _ = self.check_settings(detail, cleanup)
        return self.network_at(detail=detail, cleanup=self.assess(image).cleanup if cleanup == "auto" else cleanup)

    def assess(self, image: Any, max_pixels: int | None = inference.DEFAULT_MAX_PIXELS) -> InputQuality:
        """What `cleanup="auto"` chooses for `image`, and why: a path, a PIL image as opened (so a
        JPEG keeps its quantization tables), or an array or tensor as `upscale` takes them (noise
        only: pixels carry no tables). Always 0 when this model has no real-photo weights. The
        input is checked as `upscale` checks it, so what it refuses is refused here too."""
        if isinstance(image, (str, Path)):
            image = open_image(image, max_pixels=max_pixels)
        inference.check_input(image, max_pixels)
        return self._measure(image)

    def _measure(self, image: Any) -> InputQuality:
        """`assess` of an input already checked."""
        if not self.has_axis("cleanup"):
            return InputQuality(None, 0.0, 0.0)
        return auto_cleanup.assess(image)


@dataclass(frozen=True)
class UpscaleResult:
    """What `SRPipeline.run` made and the settings it ran at. `quality` is what `cleanup="auto"`
    read off the input (None when the cleanup was given)."""

    image: Any
    detail: float
    cleanup: float
    quality: InputQuality | None
    outscale: float

    def describe(self) -> str:
        """One line for people: "cleanup 0.75 (auto: JPEG quality ~80, noise ~2.1/255)"."""
        return self.quality.describe() if self.quality is not None else f"cleanup {self.cleanup:.2f}"


def load_weight_sets(folder: Path) -> dict[str, PerceptualSR]:
    """Every weight set of a local model folder, each loaded strictly from safetensors."""
    sets = {}
    for name in WEIGHT_SETS:
        subfolder = folder / name
        if name and not (subfolder / "model.safetensors").is_file():
            if subfolder.is_dir() and any(subfolder.iterdir()):  # an interrupted download or copy
                raise ValueError(f"{subfolder} holds {', '.join(sorted(c.name for c in subfolder.iterdir()))} but no "
                                 "model.safetensors: the weight set is incomplete; download or copy it again, or "
                                 "remove the folder")
            continue
        sets[name] = PerceptualSR.from_pretrained(subfolder)
    return sets


def _local_folder(repo_or_folder: str | Path | None, hub_kwargs: dict[str, Any]) -> Path:
    """A local folder holding the model: the bundled default, the folder given, or a Hub snapshot."""
    if repo_or_folder is None:
        return check_model_folder(weights.default_model_folder())
    path = Path(repo_or_folder)
    if path.is_absolute() or str(repo_or_folder).startswith(".") or path.exists():
        return check_model_folder(path)
    patterns = [*_WEIGHT_FILES, "README.md", *(f"{name}/{file}" for name in WEIGHT_SETS if name for file in _WEIGHT_FILES)]
    try:
        return Path(snapshot_download(str(repo_or_folder), allow_patterns=patterns, **hub_kwargs))
    except (HFValidationError, LocalEntryNotFoundError, HfHubHTTPError) as error:
        raise FileNotFoundError(
            f"could not get model {str(repo_or_folder)!r} from the Hugging Face Hub ({type(error).__name__}: "
            f"{error}); check the repo id, your connection and token, or pass a local folder written by "
            "save_pretrained") from error


def blend_states(states: Mapping[str, dict[str, torch.Tensor]], point: Mapping[str, float]) -> dict[str, torch.Tensor]:
    """The weights at `point`: multilinear interpolation between the weight sets at the corners,
    one axis at a time (`torch.lerp`), of every parameter and BatchNorm statistic. At a corner the
    result is an exact copy of that set, so detail 1.0 reproduces the default bit for bit."""
    corners = {tuple(WEIGHT_SETS[name][axis] for axis in AXES): state for name, state in states.items()}
    names = set(next(iter(states.values())))
    if any(set(state) != names for state in states.values()):
        raise ValueError("the weight sets have different tensors; they must share one architecture")
    return _blend_axes(corners, [point[axis] for axis in AXES], ())


def _blend_axes(corners: dict[tuple[float, ...], dict[str, torch.Tensor]], values: list[float],
                fixed: tuple[float, ...]) -> dict[str, torch.Tensor]:
    if len(fixed) == len(values):
        return {name: tensor.clone() for name, tensor in corners[fixed].items()}
    value = values[len(fixed)]
    present = {corner[len(fixed)] for corner in corners if corner[:len(fixed)] == fixed}
    if value in present:  # on this axis's corner (or the only set along it): no interpolation
        return _blend_axes(corners, values, fixed + (value,))
    low, high = _blend_axes(corners, values, fixed + (0.0,)), _blend_axes(corners, values, fixed + (1.0,))
    return {name: torch.lerp(low[name], tensor, value) if tensor.is_floating_point() else tensor
            for name, tensor in high.items()}


def _spanned_axes(names: set[str]) -> tuple[str, ...]:
    """The axes along which the weight sets `names` can be blended: for each corner the other
    axes reach, a set at both ends of the axis."""
    corners = {tuple(WEIGHT_SETS[name][axis] for axis in AXES) for name in names}
    spanned = []
    for index, axis in enumerate(AXES):
        others = {corner[:index] + corner[index + 1:] for corner in corners}
        if all(other[:index] + (end,) + other[index:] in corners for other in others for end in (0.0, 1.0)):
            spanned.append(axis)
    return tuple(spanned)


def check_axis_value(axis: str, value: Any) -> float:
    """A blend-axis value as a float in [0, 1] (numpy numbers included); ValueError otherwise."""
    if (not isinstance(value, (int, float, np.integer, np.floating)) or isinstance(value, (bool, np.bool_))
            or not 0.0 <= value <= 1.0):
        raise ValueError(f"{axis} must be a number from 0.0 to 1.0, got {value!r}")
    return float(value)


def _missing_for(axis: str, names: set[str]) -> list[str]:
    """The weight sets a folder holding `names` lacks for `axis`: both ends of it at every corner
    the other axes reach."""
    index = list(AXES).index(axis)
    corners = {tuple(WEIGHT_SETS[name][a] for a in AXES) for name in names}
    needed = {corner[:index] + (end,) + corner[index + 1:] for corner in corners for end in (0.0, 1.0)}
    return [name for name, corner in WEIGHT_SETS.items()
            if tuple(corner[a] for a in AXES) in needed and name not in names]


def _cpu_state(network: nn.Module) -> dict[str, torch.Tensor]:
    return {name: value.detach().to("cpu", copy=True).contiguous() for name, value in network.state_dict().items()}
