"""What every saved network of the package shares: the Hub mixin, loaded safely and saved atomically.

`PyTorchModelHubMixin` gives `save_pretrained` / `from_pretrained` / `push_to_hub` with a
`config.json` and `model.safetensors`. Two of its defaults fall short here and are replaced once,
for the upscaler and the cleanup network alike: loading falls back to pickles and is not strict
(a renamed layer would load silently as random weights), and saving deletes `config.json` first
(a kill there leaves weights with no config).
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import safetensors.torch
import torch
from huggingface_hub import PyTorchModelHubMixin, constants, hf_hub_download
from torch import nn

from perceptual_sr.utils.atomic_write import atomic_file, write_text


class SafeHubModule(nn.Module, PyTorchModelHubMixin):
    """An `nn.Module` built from one frozen config dataclass (`config_class`), saved and loaded
    through the Hub mixin with strict safetensors loading and atomic writes."""

    config_class: type = object

    def _check_config(self, config: Any) -> Any:
        """`config` as a `config_class` (None: its defaults; a dict: its fields), or ValueError."""
        if config is None:
            return self.config_class()
        if isinstance(config, dict):
            return self.config_class.from_dict(config)
        if not isinstance(config, self.config_class):
            raise ValueError(f"config must be a {self.config_class.__name__} or a dict of its fields, got "
                             f"{type(config).__name__}: {config!r}; is config.json damaged?")
        return config

    @classmethod
    def _from_pretrained(cls, *, model_id: str, revision: str | None, cache_dir: str | Path | None,
                         force_download: bool, local_files_only: bool, token: str | bool | None,
                         map_location: str = "cpu", **model_kwargs: Any) -> "SafeHubModule":
        # Replaces the mixin's loader: safetensors only (never a pickle fallback), always strict.
        model = cls(**model_kwargs)
        if os.path.isdir(model_id):
            model_file = os.path.join(model_id, constants.SAFETENSORS_SINGLE_FILE)
        else:
            model_file = hf_hub_download(repo_id=model_id, filename=constants.SAFETENSORS_SINGLE_FILE,
                                         revision=revision, cache_dir=cache_dir, force_download=force_download,
                                         token=token, local_files_only=local_files_only)
        safetensors.torch.load_model(model, model_file, strict=True, device=map_location)
        broken = [name for name, value in model.state_dict().items()
                  if value.is_floating_point() and not torch.isfinite(value).all()]
        if broken:  # such weights run, and write a garbage image
            raise ValueError(f"{model_file} holds NaN or infinite values (in {', '.join(broken[:3])}"
                             f"{', ...' if len(broken) > 3 else ''}); the weights are damaged: retrain or re-download")
        return model.eval()

    def save_pretrained(self, save_directory: str | Path, *, config: Any = None, repo_id: str | None = None,
                        push_to_hub: bool = False, model_card_kwargs: dict[str, Any] | None = None,
                        **push_to_hub_kwargs: Any) -> str | None:
        """Write config.json, model.safetensors and (unless one is there) the card README.md to
        `save_directory`, each atomically: a kill leaves the old file or the new one."""
        save_directory = Path(save_directory)
        self._save_pretrained(save_directory)
        card_path = save_directory / "README.md"
        if not card_path.exists():
            write_text(card_path, self.generate_model_card(**(model_card_kwargs or {})).content)
        if push_to_hub:
            return self.push_to_hub(repo_id or save_directory.name, model_card_kwargs=model_card_kwargs,
                                    **push_to_hub_kwargs)
        return None

    def _save_pretrained(self, save_directory: Path) -> None:
        # Replaces the mixin's writer: config and weights each written atomically, from the plain
        # module in the standard memory layout.
        state = {name: value.detach().contiguous() for name, value in self.state_dict().items()}
        with atomic_file(Path(save_directory) / constants.SAFETENSORS_SINGLE_FILE) as staging:
            safetensors.torch.save_file(state, str(staging), metadata={"format": "pt"})
        write_text(Path(save_directory) / constants.CONFIG_NAME,
                   json.dumps(dataclasses.asdict(self.config), sort_keys=True, indent=2))
