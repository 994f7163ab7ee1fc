"""`python -m devtools.bench` (what `make bench` runs)."""

import sys

from devtools.bench.run import main

if __name__ == "__main__":
    sys.exit(main())
