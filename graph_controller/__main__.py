"""`python -m graph_controller` is the `infergraph` command."""

import sys

from graph_controller.cli import main

sys.exit(main())
