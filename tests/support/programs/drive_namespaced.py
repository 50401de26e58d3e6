"""Run a Supervisor whose command is a cvmfsexec stand-in, with the namespace-aware master finder.

Usage: ``drive_namespaced.py CONFIG.json`` (the keys of drive_supervisor.py, plus
``master_name``: the command name the finder looks for). The outcome file also
holds the master's pid inside the namespace, as the finder read it from NSpid.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from drive_supervisor import RecordingHooks, write_atomically

from ospool_ep.cvmfs.cvmfsexec import MasterFinder
from ospool_ep.pilot.supervise import Supervisor


def main() -> int:
    config = json.loads(Path(sys.argv[1]).read_text())
    finder = MasterFinder(name=config["master_name"])
    supervisor = Supervisor(
        command=config["command"],
        environment=config["environment"],
        grace_seconds=config["grace_seconds"],
        drain_seconds=config["drain_seconds"],
        hooks=RecordingHooks(config),
        resolve_master=finder,
    )
    outcome = supervisor.run()
    write_atomically(
        Path(config["outcome"]),
        {
            "code": int(outcome.code),
            "reason": outcome.reason,
            "found": finder.ever_found,
            "inner_pid": finder.inner_pid,
        },
    )
    return int(outcome.code)


if __name__ == "__main__":
    sys.exit(main())
