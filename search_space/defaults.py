"""Every protocol default, defined once: the space parser, the timing policy, the CLI and the README's numbers
(checked by a test) all read them from here."""

from __future__ import annotations

MAX_LOSS = 0.02
"""Largest accepted relative CLIP-score loss of an upper bound."""
CONFIDENCE = 0.95
"""Confidence level of every interval sweep reports, and of sequential rejection."""

NUM_PROMPTS = 8
"""Prompts of the quality pass."""
TIMING_PROMPTS = 4
"""Prompts of the timing set: the paired A/B timing runs on these only (a prompt's text does not change the work)."""
SEED = 0
PROMPTS = "bundled"
SCORER = "ViT-g-14"
SCORER_PRETRAINED = "laion2b_s34b_b88k"

WARMUP_TOLERANCE = 0.05
"""Warm-up ends when two successive runs differ by at most this fraction..."""
WARMUP_CAP = 8
"""... or after this many runs."""
MIN_PAIRS = 6
"""Fewest A/B pairs of a precise timing; at least one pass over the timing set is made regardless."""
MAX_PAIRS = 40
TARGET_HALF_WIDTH = 0.03
"""Precise timing repeats until the speed-up's 95% CI half-width is at most this fraction of it."""
FIRST_ESTIMATE_MARGIN = 0.05
"""Added to the half-width of a first estimate from runs minutes apart (a former one, or a paired pass of a
single batch): the clock drifts between them."""
CPU_BOUND_BELOW = 0.5
"""A timing during which the GPU was busy less than this fraction of the time is marked CPU-bound: the host's
CPU, launching the kernels, set its time (a speed-up that moves with the host's other tenants)."""
PAIRED_FIRST_MARGIN = 0.02
"""Added to the half-width of a first estimate from a paired pass (every timing batch run by the baseline and
the setting back to back): what a few pairs cannot show of the spread."""
DRIFT_TOLERANCE = 0.03
"""A checked first estimate (speed-only rows of several timing prompts, speed baseline timed by the same process)
runs the setting over the timing set and the baseline over one batch of it right after; within this fraction (in
log) of the speed baseline's time for that batch, the setting is compared with the speed baseline's pass and this
fraction is added to its interval; further off, the row is drifting and gets paired passes from there on."""
CONFIRM_TOP = 3
"""Contenders timed precisely per round before an upper bound is published."""
SHARED_MARGIN = 0.05
"""Added to a first estimate's relative half-width where it is shared from a row of another scheduler with the same
denoiser calls (same pipeline, steps, shape, dtype, batch): what the schedulers' own per-step work can move it by.
Such an estimate only chooses the contenders; a row's bound is still timed precisely in that row."""
CANARY_TOLERANCE = 0.15
"""How far a re-timed speed baseline (the canary a run adds to a stored environment with) may be from the stored
one, relative, before the machine counts as in another state (or three times the stored spread, if wider). At
batch 1 the same H200 model ran one baseline 1.12 s on one host and 1.35-1.48 s on two others; a CPU-bound
host's drift within a run stays under 10%."""

LEASE_SECONDS = 60.0
"""How long a worker holds a claimed task without renewing it (it renews every third of this)."""
PATIENCE = 15
"""optuna: stop after this many new trials without a better setting within max-loss."""
TARGET_FACTORS = "easy=0.8,medium=1.0,hard=1.2"
"""Task difficulties and their factors: target = floor(upper bound × factor × 10) / 10."""

MAX_SPACE_SETTINGS = 100_000
"""A space is counted before it is expanded and refused above this many settings (baselines included): the
reference-all preset has 1,442; a space of millions is a typo, and would take hours just to list."""

GRADE_REQUEST_SECONDS = 600.0
"""A graded pipeline's wall-clock limit per request (loading it, or one generation)."""
GRADE_LOAD_SECONDS = 900.0
"""... and for loading the pipeline (building it, hashing its weights)."""
GRADE_MEMORY_GIB = 64
"""Memory a graded pipeline's process may use (address space on a CPU; resident size checked on a GPU)."""

GRADE_MIN_PAIRS = 6
GRADE_MAX_PAIRS = 30
"""Baseline/solution pairs of a grade: at least 6 (and one per prompt batch), at most 30; in between, until the
speed-up's 95% interval lies wholly on one side of the target."""
GRADE_PROMPTS = 8
"""Prompts of a grade (the pairs cycle through them, each pair under fresh seeds)."""
