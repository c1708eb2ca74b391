"""The fronts over the application layer: the command line (cli) and the HTTP API (serve)."""
