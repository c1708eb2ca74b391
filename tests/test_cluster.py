"""The cluster launch files (scripts/cluster/): a Slurm array job and a Kubernetes Job of `sweep worker`s, each
rendered, checked, and its workers' command run as the cluster would run it — two at once, each in an empty folder,
with nothing but the database URL — until the study is finished. Real PostgreSQL, real tiny pipelines on the CPU."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from sqlalchemy import func, select

from scripts.cluster.render import main as render_main
from scripts.cluster.render import render
from storage import Repository
from storage.models import SpeedTrialRow, TaskRow
from tests.conftest import tiny_speed_space


def run_workers(commands: list[list[str]], url: str, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWEEP_")}
    env.update(SWEEP_DB=url, PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}", SWEEP_CPU_THREADS="1")
    folders, processes = [], []
    for i, command in enumerate(commands):
        folder = tmp_path / f"node-{i}"
        folder.mkdir()
        folders.append(folder)
        processes.append(subprocess.Popen(command, cwd=folder, env={**env, "SLURM_ARRAY_TASK_ID": str(i)},
                                          stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    for p in processes:
        out, err = p.communicate(timeout=600)
        assert p.returncode == 0, err.decode()[-2000:]
    assert [list(f.iterdir()) for f in folders] == [[] for _ in folders]  # the URL is all they had
    repo = Repository(url)
    with repo.session() as s:
        keys = s.scalars(select(SpeedTrialRow.setting_key)).all()
        statuses = dict(s.execute(select(TaskRow.status, func.count()).group_by(TaskRow.status)).all())
    assert len(keys) == len(set(keys)) == 2 and set(statuses) == {"done"}, statuses
    (row,) = [b.as_row() for b in repo.bounds.rows(0.02)]
    assert row["timing"] == "precise"
    repo.close()


def test_a_slurm_array_task_and_a_kubernetes_pod_finish_one_study_with_nothing_but_the_url(tmp_path: Path,
                                                                                        postgres_url: str) -> None:
    space = tmp_path / "space.toml"
    space.write_text(tiny_speed_space("cluster"), encoding="utf-8")
    # as submitted to GPU nodes
    on_gpus = render("slurm", workers=8, space="--preset reference --weights random")
    assert "#SBATCH --array=0-7" in on_gpus and "#SBATCH --gres=gpu:1" in on_gpus
    assert 'exec sweep worker --db "$SWEEP_DB" --device cuda --lease 60' in on_gpus
    job = yaml.safe_load(render("k8s", workers=4, space="--preset reference", image="registry.example/sweep:1"))
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert job["kind"] == "Job" and job["spec"]["completions"] == job["spec"]["parallelism"] == 4
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1" and container["image"] == "registry.example/sweep:1"
    assert container["env"] == [{"name": "SWEEP_DB", "valueFrom": {"secretKeyRef": {"name": "sweep-db", "key": "url"}}}]
    # on this machine's CPU: one array task of the Slurm job and one pod of the Kubernetes Job share one study
    script = tmp_path / "sweep.sbatch"
    script.write_text(render("slurm", workers=2, space=str(space), device="cpu", lease=10), encoding="utf-8")
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    done = subprocess.run(["bash", str(script)], capture_output=True, text=True, env={"PATH": os.environ["PATH"]})
    assert done.returncode != 0 and "set SWEEP_DB" in done.stderr  # without the URL it stops at once, naming it
    job = yaml.safe_load(render("k8s", workers=2, space=str(space), device="cpu", lease=10))
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert "nvidia.com/gpu" not in container["resources"]["limits"]
    run_workers([["bash", str(script)], container["command"]], postgres_url, tmp_path)


def test_values_a_cluster_cannot_take_are_refused_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert render_main(["k8s", "--workers", "0", "--space", "--preset tiny"]) == 2
    assert render_main(["k8s", "--workers", "2", "--space", "--preset tiny", "--name", "Sweep_Study"]) == 2
    assert render_main(["slurm", "--workers", "2", "--space", "'unclosed"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 3 and all(line.startswith("error: ") for line in lines), lines
