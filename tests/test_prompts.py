"""Prompt sources: bundled set, local txt/jsonl/csv/parquet files, COCO-style datasets through `datasets`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from search_space.spec import ProtocolSpec
from sweep.errors import PromptError
from sweep.measurement.prompts import load_prompts
from sweep.measurement.protocol import Protocol

PROMPTS = ["a red bicycle", "two cats on a sofa", "a castle at dusk"]


def test_bundled_set() -> None:
    prompts = load_prompts("bundled", 60)
    assert len(prompts) == 60 == len(set(prompts))
    assert not any(p.startswith("#") for p in prompts)


@pytest.mark.parametrize("suffix", [".txt", ".jsonl", ".csv", ".parquet"])
def test_local_files(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"prompts{suffix}"
    if suffix == ".txt":
        path.write_text("# comment\n" + "\n".join(PROMPTS) + "\n\n")
    elif suffix == ".jsonl":
        path.write_text("\n".join(json.dumps({"caption": p, "id": i}) for i, p in enumerate(PROMPTS)))
    elif suffix == ".csv":
        path.write_text("id,prompt\n" + "\n".join(f'{i},"{p}"' for i, p in enumerate(PROMPTS)) + "\n")
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.table({"text": PROMPTS}), path)
    assert load_prompts(str(path), 3) == PROMPTS
    assert load_prompts(str(path), 2) == PROMPTS[:2]
    with pytest.raises(PromptError, match="4 prompts requested, only 3 available"):
        load_prompts(str(path), 4)


def test_coco_style_dataset_saved_locally(tmp_path: Path) -> None:
    import datasets

    captions = [[p, p + " (second caption)"] for p in PROMPTS]
    datasets.DatasetDict(
        {"validation": datasets.Dataset.from_dict({"file_name": ["1.jpg", "2.jpg", "3.jpg"], "captions": captions})}
    ).save_to_disk(tmp_path / "coco")
    assert load_prompts(f"coco:{tmp_path / 'coco'}", 2) == PROMPTS[:2]  # first caption of each of the first images


def test_coco_offline_is_a_clear_error(tmp_path: Path) -> None:
    space = tmp_path / "s.toml"
    space.write_text('[protocol]\nprompts = "coco"\nnum_prompts = 2\nscorer = "sweep-tiny-clip"\nscorer_pretrained = "random"\n'
                     '[[base]]\npipelines = ["tiny-sd-b"]\nschedulers = ["DDIMScheduler"]\nsteps = [2]\ndtype = "float32"\n')
    proc = subprocess.run(
        [sys.executable, "-m", "sweep", "upbound", str(space), "--db", f"sqlite:///{tmp_path / 'x.db'}", "--quiet"],
        capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=300,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "cannot load COCO captions from 'phiyodr/coco2017'" in " ".join(proc.stderr.split())


def test_prompt_content_is_part_of_the_quality_protocol_not_the_timing(tmp_path: Path) -> None:
    other = tmp_path / "p.txt"
    other.write_text("\n".join(PROMPTS))
    a = Protocol.resolve(ProtocolSpec(prompts="bundled", num_prompts=3))
    b = Protocol.resolve(ProtocolSpec(prompts=str(other), num_prompts=3))
    c = Protocol.resolve(ProtocolSpec(prompts="bundled", num_prompts=3))
    assert a.quality.key != b.quality.key and a.quality.key == c.quality.key
    # speed does not depend on the prompts' words: both time the same work under one timing protocol
    assert a.timing.key == b.timing.key and a.timing.images == 3
    d = Protocol.resolve(ProtocolSpec(prompts="bundled", num_prompts=3, timing_prompts=2))
    assert d.timing.key != a.timing.key and d.quality.key == a.quality.key and d.timing_prompts == a.timing_prompts[:2]


def test_a_speed_only_run_reads_only_the_prompts_it_times() -> None:
    """The reference preset asks 100 quality prompts; on random weights (`--weights random`) nothing is scored,
    so the 63 bundled prompts are enough: only the timing set is read."""
    from search_space import defaults
    from sweep import app as app_layer
    from sweep.errors import SweepError
    from sweep.measurement.protocol import Protocol

    space = app_layer.load_space(None, "reference", "bundled", "random")
    assert {e.base.weights for e in space.entries} == {"random"} and len(space.entries) == 31
    protocol = Protocol.for_space(space)
    assert len(protocol.quality.prompts) == protocol.timing.images == defaults.TIMING_PROMPTS
    pretrained = app_layer.load_space(None, "reference", "bundled")
    with pytest.raises(SweepError, match="100 prompts requested, only 63 available"):
        Protocol.for_space(pretrained)  # where quality is scored, every prompt it asks for is needed
    with pytest.raises(SweepError, match="--weights pretrained: tiny-sd-a has no published weights"):
        app_layer.load_space(None, "tiny", None, "pretrained")
