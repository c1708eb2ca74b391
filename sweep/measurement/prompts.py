"""Prompt sources: COCO 2017 validation captions through `datasets`, a local file, or the bundled set.

The prompt set's SHA-256 is part of the protocol key, so results from different prompts never mix.
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Iterable, Mapping
from importlib import resources
from pathlib import Path

from search_space.keys import canonical_json
from sweep.errors import PromptError

BUNDLED = "bundled"
COCO = "coco"
DEFAULT_COCO_DATASET = "phiyodr/coco2017"
TEXT_FIELDS = ("prompt", "caption", "text", "captions", "sentences")


def _parse_lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def _text_of(record: object, where: str) -> str:
    """The prompt of one record: a string, or the first caption/prompt/text field (first item of a list)."""
    value: object = record
    if isinstance(record, Mapping):
        field = next((f for f in TEXT_FIELDS if f in record), None)
        if field is None:
            raise PromptError(f"{where}: no prompt field; expected one of {', '.join(TEXT_FIELDS)}")
        value = record[field]
    if isinstance(value, list) and value:
        value = value[0]
    if isinstance(value, Mapping):  # e.g. {"raw": "..."} sentence objects
        value = value.get("raw", value.get("text"))
    if not isinstance(value, str) or not value.strip():
        raise PromptError(f"{where}: empty or non-text prompt {value!r}")
    return value.strip()


def _from_file(path: Path) -> list[str]:
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        try:
            return [_text_of(json.loads(line), f"{path}:{i}") for i, line in enumerate(lines, start=1)]
        except json.JSONDecodeError as exc:
            raise PromptError(f"{path}: not JSON lines ({exc})") from None
    if suffix == ".csv":
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
        if rows and not any(field in rows[0] for field in TEXT_FIELDS):
            first = next(iter(rows[0]))
            rows = [{"prompt": row[first]} for row in rows]
        return [_text_of(row, f"{path}:{i}") for i, row in enumerate(rows, start=2)]
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            records = pq.read_table(path).to_pylist()
        except Exception as exc:  # pyarrow raises ArrowInvalid and friends for a damaged file
            raise PromptError(f"{path}: cannot read parquet ({exc})") from None
        return [_text_of(r, f"{path} row {i}") for i, r in enumerate(records)]
    return _parse_lines(path.read_text(encoding="utf-8"))


def _from_dataset(reference: str, count: int) -> list[str]:
    """First caption of each of the first ``count`` records of a hub dataset id or a saved local dataset."""
    import datasets

    records: Iterable[object]
    try:
        if Path(reference).expanduser().is_dir():
            loaded = datasets.load_from_disk(str(Path(reference).expanduser()))
            if isinstance(loaded, datasets.DatasetDict):
                loaded = loaded["validation"] if "validation" in loaded else next(iter(loaded.values()))
            records = loaded.select(range(min(count, len(loaded))))
        else:
            records = datasets.load_dataset(reference, split="validation", streaming=True).take(count)
        return [_text_of(r, f"{reference} record {i}") for i, r in enumerate(records)]
    except PromptError:
        raise
    except Exception as exc:  # offline, unknown id, no validation split...: all mean "cannot read it"
        first_line = (str(exc).strip().splitlines() or [""])[0]
        raise PromptError(
            f"cannot load COCO captions from {reference!r} ({type(exc).__name__}: {first_line}); offline, use "
            "a saved copy (prompts = \"coco:/path/to/saved_dataset\"), a local prompt file, or prompts = \"bundled\""
        ) from None


def load_prompts(source: str, count: int) -> list[str]:
    """The first ``count`` prompts of ``source``.

    ``bundled``; ``coco`` or ``coco:DATASET`` (hub id or a folder saved with ``Dataset.save_to_disk``); or a
    path to a .txt (one per line), .jsonl, .csv or .parquet file.
    """
    if source == BUNDLED:
        prompts = _parse_lines((resources.files("sweep") / "data" / "prompts.txt").read_text(encoding="utf-8"))
    elif source == COCO or source.startswith(COCO + ":"):
        prompts = _from_dataset(source.partition(":")[2] or DEFAULT_COCO_DATASET, count)
    else:
        path = Path(source).expanduser()
        try:
            prompts = _from_file(path)
        except FileNotFoundError:
            raise PromptError(f"{source}: no such prompt file") from None
        except (OSError, UnicodeDecodeError, csv.Error) as exc:
            raise PromptError(f"{source}: cannot read prompts ({exc.__class__.__name__}: {exc})") from None
    if len(prompts) < count:
        raise PromptError(f"{source}: {count} prompts requested, only {len(prompts)} available")
    return prompts[:count]


def prompts_sha256(prompts: list[str]) -> str:
    return hashlib.sha256(canonical_json(prompts).encode("utf-8")).hexdigest()
