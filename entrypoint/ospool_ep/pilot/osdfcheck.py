"""The supervisor's OSDF plugin test: in the background at start, then every period.

Each verdict that differs from the one applied is written to the drop-in
(:data:`ospool_ep.pilot.osdf.DROPIN_FILE`, by rename) and asks for a reconfig; the
same verdict again changes nothing. A reload re-renders ``config.d`` whole, so the
applied verdict is written again after it (:meth:`OsdfCheck.reapply`).
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ospool_ep.pilot import atomic
from ospool_ep.pilot.child import BoundedChild
from ospool_ep.pilot.osdf import (
    DROPIN_FILE,
    SELFTEST_SECONDS,
    OsdfPlan,
    Verdict,
    config_text,
    verdict_from,
)

Event = Callable[..., None]


def selftest_command(plugin: str, url: str = "") -> list[str]:
    """The plugin's test of ``url`` (default: OSG's test object), ending inside our bound."""
    return [plugin, "-selftest", *([url] if url else []), "-timeout", f"{SELFTEST_SECONDS - 5:g}"]


def test_once(plugin: str, environment: Mapping[str, str], *, url: str = "") -> Verdict:
    """The same test, waited for (``ospool-ep check --osdf [URL]``)."""
    try:
        done = subprocess.run(
            selftest_command(plugin, url),
            env=dict(environment),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=SELFTEST_SECONDS,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return verdict_from(None, b"")
    except OSError as error:
        return Verdict(False, f"cannot run the plugin: {error}")
    status = done.returncode << 8 if done.returncode >= 0 else -done.returncode
    return verdict_from(status, done.stdout)


def same_offer(applied: Verdict | None, verdict: Verdict) -> bool:
    """Whether ``verdict`` configures what ``applied`` did. Two passes do, whatever their
    lines say (each names its own transfer time: comparing them reconfigured HTCondor
    every period); two failures only with the same reason, which the ad shows."""
    if applied is None:
        return False
    return (applied.ok and verdict.ok) or applied == verdict


@dataclass
class OsdfCheck:
    plan: OsdfPlan
    config_dir: Path
    environment: Mapping[str, str]
    output: Path
    clock: Callable[[], float]
    event: Event
    applied: Verdict | None = None
    due: float = 0.0
    changed: bool = False
    """A new verdict was written and awaits the reconfig that applies it."""
    child: BoundedChild | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        if self.plan.plugin is not None:
            self.child = BoundedChild(
                command=selftest_command(self.plan.plugin),
                environment=self.environment,
                output=self.output,
                clock=self.clock,
                timeout=SELFTEST_SECONDS,
                niceness=10,  # a background check: the daemons and jobs come first
            )

    def tick(self) -> bool:
        """Start a test when one is due, kill one past its time; True: reconfigure now."""
        child = self.child
        if child is None:
            return False
        now = self.clock()
        if child.running():
            child.expire(now)
        elif now >= self.due:
            self.due = now + self.plan.check_seconds
            try:
                child.start()
            except OSError as error:
                self.settle(Verdict(False, f"cannot run the plugin: {error}"))
        changed, self.changed = self.changed, False
        return changed

    def child_exited(self, pid: int, status: int) -> bool:
        """The reaper's news; True when the child was ours."""
        if self.child is None:
            return False
        result = self.child.collect(pid, status)
        if result is None:
            return False
        self.settle(verdict_from(*result))
        return True

    def settle(self, verdict: Verdict) -> None:
        if same_offer(self.applied, verdict):
            return
        self.applied = verdict
        self.reapply()
        self.changed = True
        if verdict.ok:
            self.event(
                "info", f"OSDF plugin test passed, osdf/pelican/stash offered: {verdict.reason}"
            )
        else:
            self.event(
                "warning",
                f"OSDF plugin test failed, osdf/pelican/stash not offered: {verdict.reason}",
            )

    def reapply(self) -> None:
        if self.applied is not None:
            text = config_text(self.plan, self.applied)
            atomic.replace_file(self.config_dir / DROPIN_FILE, text)

    def stop(self) -> None:
        if self.child is not None:
            self.child.stop()
