"""A study: what a space asks of each base configuration (catalogue, scope), the strategies that pick the
settings to measure, the runner and the workers that measure them, and the import of former results."""
