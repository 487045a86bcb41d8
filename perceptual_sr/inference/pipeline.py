"""The upscaling pipeline: the named weight sets of one model folder, blended along named axes.

A model folder (or Hub repo) holds one network architecture and up to several trained weight
sets, each a `save_pretrained` folder (`config.json` + `model.safetensors`):

    model.safetensors, config.json   the default: the feature-loss model (detail 1, cleanup 0)
    pixel-twin/                      the same network fine-tuned on pixel loss (detail 0, cleanup 0)
    real-photo/                      the default fine-tuned on degraded photos (detail 1, cleanup 1)
    real-photo-pixel-twin/           the twin fine-tuned on degraded photos (detail 0, cleanup 1)
    cleanup/                         the cleanup network (`restorer.CleanupNet`): run on the input
                                     before the upscaler, at the `cleanup` strength


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
from pathlib import Path
from typing import Any, Mapping

import torch
from huggingface_hub import snapshot_download
from huggingface_hub.errors import HfHubHTTPError, HFValidationError, LocalEntryNotFoundError
from torch import nn

from perceptual_sr.hub import model_card, weights
from perceptual_sr.inference.image_pipeline import AXES, ImagePipeline, check_axis_value, check_cleanup_setting
from perceptual_sr.networks import inference_network
from perceptual_sr.networks.restorer import CleanupAt, CleanupNet
from perceptual_sr.networks.upscaler import PerceptualSR, check_model_folder
from perceptual_sr.utils.atomic_write import atomic_entries
from perceptual_sr.utils.image_io import check_outscale

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
CLEANUP_SUBFOLDER = "cleanup"
# Blends kept ready (each is a full network copy plus its inference networks): the app's slider
# visits a handful of values; eight covers them without growing without bound.
MAX_CACHED_BLENDS = 8
_WEIGHT_FILES = ["config.json", "model.safetensors"]


class SRPipeline(ImagePipeline):
    """Weight sets of one architecture, blended on request, with images in and out.

    `SRPipeline.from_pretrained()` loads the bundled default; `.upscale(image, detail=0.5)`
    upscales a PIL image, path, numpy array or tensor and returns the same kind.
    Safe for concurrent callers: the weight sets are never changed after loading, and blends
    and their inference networks are built under a lock and then only read.
    """

    def __init__(self, weight_sets: Mapping[str, PerceptualSR], cleanup: CleanupNet | None = None) -> None:
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
        # The cleanup network, if any: it gives the cleanup axis on its own (strength 0 skips it),
        # and the upscaler blends toward the real-photo weights too where the folder has them.
        self._cleanup_state = None if cleanup is None else _cpu_state(cleanup)
        self.cleanup_config = None if cleanup is None else cleanup.config
        self._weight_axes = _spanned_axes(set(self._states))
        self.axes = tuple(axis for axis in AXES if axis in self._weight_axes or (axis == "cleanup" and cleanup))
        self._lock = threading.Lock()
        self._blends: OrderedDict[tuple[float, ...], PerceptualSR] = OrderedDict()
        self._networks: dict[tuple[tuple[float, ...], str, bool], nn.Module] = {}
        self._cleanups: dict[str, CleanupNet] = {}  # per device
        # What the loaded folder's card recorded (model_card.carried_from), kept by save_pretrained.
        self.card_record: dict[str, Any] = {}

    # --- loading and saving ---------------------------------------------------------------------

    @classmethod
    def from_pretrained(cls, repo_or_folder: str | Path | None = None, **hub_kwargs: Any) -> "SRPipeline":
        """Load a model folder, a Hub repo id (downloaded once, weight files only), or (None) the
        bundled default. `hub_kwargs` (revision, cache_dir, token, local_files_only, ...) go to
        `huggingface_hub.snapshot_download`."""
        folder = _local_folder(repo_or_folder, hub_kwargs)
        pipeline = cls(load_weight_sets(folder), load_cleanup_network(folder))
        pipeline.card_record = model_card.carried_from(folder / "README.md")
        return pipeline

    @classmethod
    def from_network(cls, network: PerceptualSR) -> "SRPipeline":
        """A pipeline of one weight set: `network`'s (no blend axes)."""
        return cls({"": network})

    def has_cleanup_network(self) -> bool:
        return self._cleanup_state is not None

    def blends_cleanup(self) -> bool:
        """Whether the upscaler's weights change along `cleanup` (the real-photo weight sets)."""
        return "cleanup" in self._weight_axes

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
        cleanup = () if self.cleanup_config is None else (
            "cleanup-chroma" if self.cleanup_config.corrects == "chroma" else CLEANUP_SUBFOLDER,)  # as the card says
        card = {**self.card_record, **card,
                "weight_sets": tuple(name for name in WEIGHT_SETS if name in self._states) + cleanup}
        owned = {*_WEIGHT_FILES, "README.md", *(name for name in WEIGHT_SETS if name), CLEANUP_SUBFOLDER}
        with atomic_entries(folder, owned) as staging:
            for name, state in self._states.items():
                network = PerceptualSR(self.config)
                network.load_state_dict(state)
                network.save_pretrained(staging / name, model_card_kwargs=card)
                if name:
                    (staging / name / "README.md").unlink()  # one card for the model, at the top
            if self._cleanup_state is not None:
                self.cleanup_network("cpu").save_pretrained(staging / CLEANUP_SUBFOLDER)
                (staging / CLEANUP_SUBFOLDER / "README.md").unlink()
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
        key = self._weight_point(self._point(point))
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
        key = self._weight_point(self._point(point))
        with self._lock:
            slot = (key, str(device), fast)
            network = self._networks.get(slot)
            if network is None:
                network = inference_network.prepare(self._blend(key), device, fast)
                self._networks[slot] = network
            return network

    def _weight_point(self, key: tuple[float, ...]) -> tuple[float, ...]:
        """The point of the weight-set blend for the point `key` on the axes: an axis that only the
        cleanup network spans stays at its default there."""
        return tuple(value if axis in self._weight_axes else AXES[axis] for axis, value in zip(AXES, key))

    def cleanup_at(self, strength: float, device: torch.device | str = "cpu") -> CleanupAt | None:
        """The cleanup network bound to `strength` on `device`, as an LR -> LR module; None at
        strength 0 or without a cleanup network (the input then goes to the upscaler untouched)."""
        if self._cleanup_state is None or check_axis_value("cleanup", strength) == 0.0:
            return None
        return CleanupAt(self.cleanup_network(str(device)), strength)

    def cleanup_network(self, device: str = "cpu") -> CleanupNet:
        """The cleanup network in eval mode on `device` (cached: do not modify it); ValueError
        without one."""
        if self._cleanup_state is None:
            raise ValueError("this model has no cleanup network (a cleanup/ folder)")
        with self._lock:
            network = self._cleanups.get(device)
            if network is None:
                network = CleanupNet(self.cleanup_config)
                network.load_state_dict(self._cleanup_state)
                network = network.eval().requires_grad_(False).to(device)
                self._cleanups[device] = network
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

    def check_settings(self, detail: Any = None, cleanup: Any = "auto",
                       outscale: Any = None) -> tuple[float, float | str, float]:
        """`detail`, `cleanup` and `outscale` checked for this model, with defaults filled in:
        (detail, cleanup or "auto", outscale). ValueError naming the setting otherwise. The one
        place these settings are validated; the CLI and the app ask here."""
        detail = AXES["detail"] if detail is None else check_axis_value("detail", detail)
        cleanup = check_cleanup_setting(cleanup)
        self._point({"detail": detail, "cleanup": None if cleanup == "auto" else cleanup})  # axes this model has
        outscale = float(self.scale) if outscale is None else check_outscale(outscale)
        return detail, cleanup, outscale

    def network_for(self, image: Any, *, detail: float | None = None,
                    cleanup: float | str | None = "auto") -> PerceptualSR:
        """The network `upscale` would run for `image` (as `network_at`; cleanup "auto" measured on
        it): what evaluation scores per image."""
        return self.components_for(image, detail=detail, cleanup=cleanup)[0]

    def scored_network(self, detail: float, cleanup: float) -> PerceptualSR:
        return self.network_at(detail=detail, cleanup=cleanup)

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


def load_cleanup_network(folder: Path) -> CleanupNet | None:
    """The cleanup network of a local model folder (its `cleanup/` subfolder), or None without one."""
    subfolder = folder / CLEANUP_SUBFOLDER
    if not (subfolder / "model.safetensors").is_file():
        if subfolder.is_dir() and any(subfolder.iterdir()):
            raise ValueError(f"{subfolder} holds {', '.join(sorted(c.name for c in subfolder.iterdir()))} but no "
                             "model.safetensors: the cleanup network is incomplete; download or copy it again, or "
                             "remove the folder")
        return None
    return CleanupNet.from_pretrained(subfolder)


def _local_folder(repo_or_folder: str | Path | None, hub_kwargs: dict[str, Any]) -> Path:
    """A local folder holding the model: the bundled default, the folder given, or a Hub snapshot."""
    if repo_or_folder is None:
        return check_model_folder(weights.default_model_folder())
    path = Path(repo_or_folder)
    if path.is_absolute() or str(repo_or_folder).startswith(".") or path.exists():
        return check_model_folder(path)
    patterns = [*_WEIGHT_FILES, "README.md", *(f"{name}/{file}" for name in (*WEIGHT_SETS, CLEANUP_SUBFOLDER) if name
                                               for file in _WEIGHT_FILES)]
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
