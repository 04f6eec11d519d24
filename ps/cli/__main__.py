"""``python -m ps.cli``: the same as ``psctl``."""

from ps.cli import main

if __name__ == "__main__":
    main()
