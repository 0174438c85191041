"""`python -m gateway.cli`: the mailgw command."""

import sys

from gateway.cli import main

sys.exit(main())
