"""``python -m agent_sessions.cli`` runs the ``agent-sessions`` command line."""

from __future__ import annotations

import sys

from . import main

if __name__ == "__main__":
    sys.exit(main())
