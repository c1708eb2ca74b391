"""Measurement: generating a timing or quality set, paired timing and its statistics, the protocol, the two
passes (speed, quality) over one setting, prompts and the environment a measurement was made in."""
