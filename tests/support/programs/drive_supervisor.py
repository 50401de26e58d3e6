"""Run one ``ospool_ep.supervise.Supervisor`` as its own process, for the supervise tests.

The supervisor blocks signals and waits for them with ``sigtimedwait``; that
must not happen inside pytest's own process, so each test starts this driver
and signals *its* pid. Usage: ``drive_supervisor.py CONFIG.json``, where the
config names the master command, its environment, the grace and drain
seconds, how the hooks answer, and two output files:

- ``record``: every hook call so far (prepare_drain deadlines, reload count,
  event lines), rewritten atomically after each call so a test can poll it;
- ``outcome``: the Outcome (code, reason) plus the final state, the event
  history and the driver's children left after the run (zombies included).

Optional: ``log_dir`` makes the supervisor pump a real ``LogTailer`` on that
directory once per loop, as ``ospool-ep run`` does, its JSON lines on stdout.

The driver exits with the outcome's code, as ``ospool-ep run`` does.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

from ospool_ep.pilot.lifecycle import State
from ospool_ep.pilot.logs import Emitter
from ospool_ep.pilot.logtail import LogTailer
from ospool_ep.pilot.supervise import Supervisor, block_signals


def write_atomically(path: Path, data: object) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(json.dumps(data))
    temporary.replace(path)


class RecordingHooks:
    """Hooks that answer as configured and write down every call."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self.path = Path(config["record"])
        self.calls: dict[str, Any] = {"prepare_drain": [], "reload": 0, "events": []}
        self.reconfigured_once = False
        self.blocked_once = False
        self.save()

    def save(self) -> None:
        write_atomically(self.path, self.calls)

    def prepare_drain(self, *, deadline: float) -> None:
        self.calls["prepare_drain"].append({"deadline": deadline, "at": time.time()})
        self.save()

    def reload(self) -> bool:
        self.calls["reload"] += 1
        self.save()
        return bool(self.config.get("reload_returns", True))

    def tick(self, *, state: State, master_pid: int | None) -> bool:
        del master_pid
        block = self.config.get("tick_block_file")
        if block and not self.blocked_once and state is State.RUNNING:
            # Keep the loop away from sigtimedwait for a while, as a slow
            # reload or log pump would, and tell the test we are in here.
            self.blocked_once = True
            Path(block).write_text("in tick\n")
            time.sleep(float(self.config.get("tick_block_seconds", 2.0)))
        if self.config.get("tick_reconfigure_once") and not self.reconfigured_once:
            self.reconfigured_once = True
            return True
        return False

    def event(self, level: str, msg: str, **fields: object) -> None:
        self.calls["events"].append({"level": level, "msg": msg, "fields": fields})
        self.save()


def children_of(parent: int) -> list[dict[str, object]]:
    """This process's children as /proc shows them: pid and state letter (Z: zombie)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        if int(fields[1]) == parent:
            found.append({"pid": int(entry.name), "state": fields[0]})
    return found


def main() -> int:
    config = json.loads(Path(sys.argv[1]).read_text())
    hooks = RecordingHooks(config)
    if config.get("thread_before_run"):
        # As run.py does: block the signals first, then start the collector
        # Observer before Supervisor.run(); the thread inherits the mask.
        block_signals()
        threading.Thread(target=threading.Event().wait, name="observer", daemon=True).start()
    tailer = None
    if config.get("log_dir"):
        emitter = Emitter(fmt="json", stream=sys.stdout)
        tailer = LogTailer(log_dir=Path(config["log_dir"]), emitter=emitter)
    supervisor = Supervisor(
        command=config["command"],
        environment=config["environment"],
        grace_seconds=config["grace_seconds"],
        drain_seconds=config["drain_seconds"],
        hooks=hooks,
        pump_logs=tailer.pump if tailer else lambda: None,
    )
    outcome = supervisor.run()
    if tailer:
        tailer.close()
    write_atomically(
        Path(config["outcome"]),
        {
            "code": int(outcome.code),
            "reason": outcome.reason,
            "state": supervisor.state.value,
            "history": [event.value for event in supervisor.history],
            "children": children_of(os.getpid()),
        },
    )
    return int(outcome.code)


if __name__ == "__main__":
    sys.exit(main())
