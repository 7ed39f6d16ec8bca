"""python -m codette_np.data: see codette_np.data.cli."""

import sys

from codette_np.data.cli import main

sys.exit(main())
