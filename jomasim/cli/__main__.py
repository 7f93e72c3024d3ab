"""`python -m jomasim.cli`: the `jomasim` command."""

import sys

from ._main import main

sys.exit(main())
