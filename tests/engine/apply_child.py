"""Run one apply in a child process, recording its requests as JSON lines (killed by the tests).

python tests/engine/apply_child.py CONFIG LOG_FOLDER
"""

from __future__ import annotations

import sys
from pathlib import Path

from apply_helpers import recording_transports

from sync.engine.api import Engine
from sync.settings import load_settings


def main(config: str, folder: str) -> int:
    log: list[dict[str, object]] = []
    engine = Engine(load_settings(config), transports=recording_transports(log, Path(folder)))
    engine.apply()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
