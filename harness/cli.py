"""`harness`: run or sweep (Hydra), or `harness report|compare|dashboard ...` on finished sweeps."""

from __future__ import annotations

import sys


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "dashboard":
        from harness.dashboard import main_dashboard

        sys.argv.pop(1)
        sys.exit(main_dashboard())
    if len(sys.argv) > 1 and sys.argv[1] in ("report", "compare"):
        from harness import report

        command = sys.argv.pop(1)
        sys.exit(report.main_report() if command == "report" else report.main_compare())
    from harness.app import main as hydra_main

    hydra_main()
