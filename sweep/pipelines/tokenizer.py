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


def _write_vocab(folder: Path, size: int = CLIP_VOCAB_SIZE) -> None:
    from open_clip.tokenizer import bytes_to_unicode, default_bpe

    with gzip.open(default_bpe()) as f:
        lines = f.read().decode("utf-8").split("\n")
    # Truncating the merge list gives a smaller, still valid BPE: every merge only uses earlier tokens.
    merges = lines[1 : 1 + size - 512 - 2]
    byte_tokens = list(bytes_to_unicode().values())
    vocab = byte_tokens + [t + "</w>" for t in byte_tokens]
    vocab += ["".join(m.split()) for m in merges] + ["<|startoftext|>", "<|endoftext|>"]
    assert len(vocab) == size, len(vocab)
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


def clip_tokenizer(max_length: int = 77, vocab_size: int = CLIP_VOCAB_SIZE) -> CLIPTokenizer:
    """CLIP's tokenizer; with a smaller ``vocab_size``, the same BPE cut to its first merges."""
    from transformers import CLIPTokenizer

    root = Path(os.environ.get("SWEEP_CACHE", Path.home() / ".cache" / "sweep"))
    cache = root / ("clip-bpe-tokenizer" if vocab_size == CLIP_VOCAB_SIZE else f"clip-bpe-tokenizer-{vocab_size}")
    if not (cache / "vocab.json").exists() or not (cache / "merges.txt").exists():
        _write_vocab(cache, vocab_size)
    return CLIPTokenizer(str(cache / "vocab.json"), str(cache / "merges.txt"), model_max_length=max_length)


T5_STAND_IN_VOCAB = 32100


def t5_stand_in_tokenizer(max_length: int = 300) -> CLIPTokenizer:
    """For random-weight T5 builds only: T5's SentencePiece model cannot be had offline, so prompts are split
    by CLIP's BPE cut to T5's 32,100 ids. PixArt pads every prompt to ``max_sequence_length`` tokens, so the
    encoder's work, and the timing, are the same as with the real tokenizer."""
    return clip_tokenizer(max_length=max_length, vocab_size=T5_STAND_IN_VOCAB)
