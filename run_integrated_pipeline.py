#!/usr/bin/env python3
"""The integrated pipeline, as users have always started it: the same CLI as `reelcrew run`.

    python run_integrated_pipeline.py --mock --topic "how tea is made" --scenes 5
    python run_integrated_pipeline.py status        # any other reelcrew command works too
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "src"))

COMMANDS = {"run", "resume", "retry", "cancel", "status", "repair", "cost", "doctor", "config", "assemble", "ledger",
            "backup", "restore", "prune", "serve", "token", "worker", "beat", "dead", "slo", "--help", "-h"}

if __name__ == "__main__":
    from reelcrew.cli import main

    if len(sys.argv) == 1 or sys.argv[1] not in COMMANDS:
        sys.argv.insert(1, "run")
    main()
