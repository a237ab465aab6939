"""``python3 -m plexus_relay …``: see ``plexus_relay.cli``."""

import sys

from .cli import main

sys.exit(main())
