"""python -m codette_np.chat: see codette_np.chat.session."""

import sys

from codette_np.chat.session import main

sys.exit(main())
