#!/usr/bin/env bash
# A Slurm array job of `sweep worker`s, one GPU each, sharing nothing but the study's database URL.
# Rendered by scripts/cluster/render.py; submit with: sbatch --export=ALL,SWEEP_DB=postgresql+psycopg://... FILE
#SBATCH --job-name={{name}}
#SBATCH --array=0-{{last}}
#SBATCH --cpus-per-task={{cpus}}
#SBATCH --time={{time}}
#SBATCH --output={{name}}-%A_%a.log
{{gres}}
set -euo pipefail
: "${SWEEP_DB:?set SWEEP_DB to the database URL of the study (sbatch --export=ALL,SWEEP_DB=...)}"
# every array task queues what is missing (a task is queued once, whoever comes first), then works the queue
# until no task of its environment is pending or running anywhere; a task killed with its node is taken over
# by another worker once its lease expires
sweep queue {{space}} --db "$SWEEP_DB" --device {{device}} --confirm-top {{confirm_top}}
exec sweep worker --db "$SWEEP_DB" --device {{device}} --lease {{lease}}
