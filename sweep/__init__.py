"""sweep: upper-bound speed-ups of training-free accelerations for diffusion text-to-image pipelines."""

__version__ = "0.1.0"
