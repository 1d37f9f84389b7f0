"""``python -m beneathd.daemon``: the same as the ``beneathd`` command."""

import sys

from .cli import main

sys.exit(main())
