#!/usr/bin/env python3
"""Render the cluster launch files: a Slurm array job or a Kubernetes Job of `sweep worker`s sharing one database.

    python scripts/cluster/render.py slurm --workers 8 --space "--preset reference --weights random" > sweep.sbatch
    sbatch --export=ALL,SWEEP_DB=postgresql+psycopg://user@dbhost/sweep sweep.sbatch

    kubectl create secret generic sweep-db --from-literal=url=postgresql+psycopg://user@dbhost/sweep
    python scripts/cluster/render.py k8s --workers 8 --image registry/sweep:0.1 --space "--preset reference" | kubectl apply -f -

Each worker first runs `sweep queue` with the space (a task is queued once, whoever comes first), then `sweep
worker`, which takes tasks of its environment until none is pending or running anywhere. The workers need nothing
but the URL; the environment a task belongs to is the machine's (GPU model, libraries), so give a job one kind of
node.
"""

from __future__ import annotations

import argparse
import re
import shlex
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
TEMPLATES = {"slurm": HERE / "sweep-slurm.sh", "k8s": HERE / "sweep-job.yaml"}


def render(kind: str, *, workers: int, space: str, device: str = "cuda", lease: float = 60.0, confirm_top: int = 3,
           name: str = "sweep", cpus: int = 8, time: str = "24:00:00", image: str = "sweep:latest",
           secret: str = "sweep-db") -> str:
    """The launch file of ``kind`` (``slurm`` or ``k8s``); ValueError for values it cannot hold."""
    if workers < 1:
        raise ValueError("workers must be at least 1")
    if not re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", name):
        raise ValueError(f"name {name!r}: lower-case letters, digits and '-' (a Kubernetes name)")
    shlex.split(space)  # a space argument that a shell cannot read is refused here, not on the cluster
    gpu = device.split(":")[0] == "cuda"
    values = {
        "name": name, "workers": str(workers), "last": str(workers - 1), "space": space, "device": device,
        "lease": f"{lease:g}", "confirm_top": str(confirm_top), "cpus": str(cpus), "time": time, "image": image,
        "secret": secret, "gres": "#SBATCH --gres=gpu:1" if gpu else "# (no GPU: CPU workers)",
        "gpu_limit": '              nvidia.com/gpu: "1"' if gpu else "",
    }
    text = TEMPLATES[kind].read_text(encoding="utf-8")
    missing = set(re.findall(r"\{\{(\w+)\}\}", text)) - set(values)
    assert not missing, missing
    return re.sub(r"\{\{(\w+)\}\}", lambda m: values[m.group(1)], text)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("kind", choices=sorted(TEMPLATES))
    parser.add_argument("--workers", type=int, required=True, help="array tasks / pods, one GPU each")
    parser.add_argument("--space", required=True, help='what `sweep queue` is given: a space file or "--preset NAME ..."')
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--lease", type=float, default=60.0)
    parser.add_argument("--confirm-top", type=int, default=3)
    parser.add_argument("--name", default="sweep")
    parser.add_argument("--cpus", type=int, default=8)
    parser.add_argument("--time", default="24:00:00", help="Slurm's time limit per array task")
    parser.add_argument("--image", default="sweep:latest", help="Kubernetes: an image with sweep installed")
    parser.add_argument("--secret", default="sweep-db", help="Kubernetes: the Secret holding the database URL (key: url)")
    args = parser.parse_args(argv)
    try:
        sys.stdout.write(render(args.kind, workers=args.workers, space=args.space, device=args.device, lease=args.lease,
                                confirm_top=args.confirm_top, name=args.name, cpus=args.cpus, time=args.time,
                                image=args.image, secret=args.secret))
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
