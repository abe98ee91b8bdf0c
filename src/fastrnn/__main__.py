"""``python -m fastrnn train|sample|info ...``: the command-line tools under one entry."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
