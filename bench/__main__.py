"""`python -m bench [--smoke]`: run every benchmark line and print the table (see bench/run.py)."""

import sys

from bench.run import main

sys.exit(main())
