"""The worker entry point: `python worker.py` runs chat jobs (see studychat.worker.main)."""

import sys

from studychat.worker.main import main

if __name__ == "__main__":
    sys.exit(main())
