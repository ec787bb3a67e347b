"""`python -m sparsecircuits.cli ...` (and `torchrun ... -m sparsecircuits.cli ...`): the CLI."""

import sys

from sparsecircuits.cli import main

sys.exit(main())
