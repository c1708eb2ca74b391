"""The CLIP BPE tokenizer built offline from the vocabulary that open_clip ships.

CLIP's 49,408-token vocabulary is fully determined by its BPE merge list (bytes, bytes + ``</w>``, one token
per merge, two specials); open_clip bundles that list, so the same tokenizer the SD text encoders use can be
built without a download. Used for pipelines built from configs.
"""

from __future__ import annotations

import gzip
import json
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import sweep._compat  # noqa: F401  (before transformers)

if TYPE_CHECKING:
    from transformers import CLIPTokenizer

CLIP_VOCAB_SIZE = 49408


def _write_vocab(folder: Path) -> None:
    from open_clip.tokenizer import bytes_to_unicode, default_bpe

    with gzip.open(default_bpe()) as f:
        lines = f.read().decode("utf-8").split("\n")
    merges = lines[1 : 49152 - 256 - 2 + 1]
    byte_tokens = list(bytes_to_unicode().values())
    vocab = byte_tokens + [t + "</w>" for t in byte_tokens]
    vocab += ["".join(m.split()) for m in merges] + ["<|startoftext|>", "<|endoftext|>"]
    assert len(vocab) == CLIP_VOCAB_SIZE, len(vocab)
    folder.mkdir(parents=True, exist_ok=True)
    # Write to temporary names and rename, so concurrent workers never read half a file.
    for name, text in (
        ("vocab.json", json.dumps({tok: i for i, tok in enumerate(vocab)})),
        ("merges.txt", "#version: 0.2\n" + "\n".join(merges) + "\n"),
    ):
        fd, tmp = tempfile.mkstemp(dir=folder)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, folder / name)


def clip_tokenizer(max_length: int = 77) -> CLIPTokenizer:
    from transformers import CLIPTokenizer

    cache = Path(os.environ.get("SWEEP_CACHE", Path.home() / ".cache" / "sweep")) / "clip-bpe-tokenizer"
    if not (cache / "vocab.json").exists() or not (cache / "merges.txt").exists():
        _write_vocab(cache)
    return CLIPTokenizer(str(cache / "vocab.json"), str(cache / "merges.txt"), model_max_length=max_length)
