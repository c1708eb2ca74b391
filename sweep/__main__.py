"""``python -m sweep``: the command line."""

from sweep.fronts.cli import main

if __name__ == "__main__":
    main()
