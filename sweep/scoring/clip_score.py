"""CLIP score through open_clip.

Definition (as in torchmetrics' CLIPScore and the DeepCache/ToMe papers): for an image I and its prompt T,
``100 · max(cos(E_img(I), E_txt(T)), 0)`` with the model's own preprocessing; a trial's CLIP score is the
mean over its images. Higher means the image matches its prompt better.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

import sweep._compat  # noqa: F401  (before open_clip)
from sweep.errors import ModelLoadError
from sweep.scoring.base import Scorer

if TYPE_CHECKING:
    import torch
    from PIL.Image import Image

log = logging.getLogger(__name__)

RANDOM = "random"
RANDOM_WEIGHTS_SEED = 0
DEFAULT_MODEL = "ViT-g-14"
DEFAULT_PRETRAINED = "laion2b_s34b_b88k"


def _register_shipped_configs() -> None:
    import open_clip

    folder = Path(str(resources.files("sweep.scoring") / "configs"))
    if "sweep-tiny-clip" not in open_clip.list_models():
        open_clip.add_model_config(folder)


class ClipScorer(Scorer):
    def __init__(self, model: str = DEFAULT_MODEL, pretrained: str = DEFAULT_PRETRAINED, device: str = "cpu") -> None:
        import open_clip
        import torch

        _register_shipped_configs()
        if model not in open_clip.list_models():
            raise ModelLoadError(f"unknown open_clip model {model!r}; `python -c 'import open_clip; print(open_clip.list_models())'` lists them")
        self.pretrained = pretrained
        self.random_weights = pretrained == RANDOM
        self.device = device
        torch.manual_seed(RANDOM_WEIGHTS_SEED)
        # open_clip logs a warning when it builds random weights; here that is what was asked for.
        open_clip_log = logging.getLogger()
        level = open_clip_log.level
        if self.random_weights:
            open_clip_log.setLevel(logging.ERROR)
        try:
            # Random weights are initialised on the device itself (seconds for ViT-g-14 on a GPU, not minutes).
            with torch.device(device) if self.random_weights else contextlib.nullcontext():
                self._model, _, self._preprocess = open_clip.create_model_and_transforms(
                    model, pretrained=None if self.random_weights else pretrained, device=device
                )
        except Exception as exc:  # open_clip raises RuntimeError/OSError/HF hub errors for missing weights
            raise ModelLoadError(
                f"cannot load CLIP scorer {model}/{pretrained} ({type(exc).__name__}: {str(exc).splitlines()[0]}). "
                "It needs the open_clip weights online, in the Hugging Face cache, or as a local checkpoint path "
                "given as the pretrained tag"
            ) from exc
        finally:
            open_clip_log.setLevel(level)
        self._model.eval()
        self._tokenizer = open_clip.get_tokenizer(model)

    def score(self, images: Sequence[Image], prompts: Sequence[str]) -> list[float]:
        import torch

        if len(images) != len(prompts):
            raise ValueError(f"{len(images)} images for {len(prompts)} prompts")
        with torch.inference_mode():
            pixels = torch.stack([self._preprocess(image) for image in images]).to(self.device)
            tokens = self._tokenizer(list(prompts)).to(self.device)
            return clip_scores(self._model.encode_image(pixels), self._model.encode_text(tokens))


def clip_scores(image_embeddings: torch.Tensor, text_embeddings: torch.Tensor) -> list[float]:
    """``100 · max(cos(image_i, text_i), 0)`` for each row pair (the definition of torchmetrics' CLIPScore)."""
    import torch

    image = torch.nn.functional.normalize(image_embeddings.float(), dim=-1)
    text = torch.nn.functional.normalize(text_embeddings.float(), dim=-1)
    return (100.0 * (image * text).sum(dim=-1).clamp(min=0)).tolist()
