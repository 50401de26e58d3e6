"""OSDF transfers on this pilot: whether the osdf/pelican/stash plugin is offered.

As OSG's pilot does (osg-flock's pelican-setup), the plugin is run once on a known object
before its methods are offered, and a plugin that fails is not offered: its reason is the
ad's ``OSDF_FAIL_REASON``. Unlike it, the test is not in the way of the start: HTCondor
starts with the methods off, the supervisor runs the test in the background once the
collector lists the pilot's slot and every ``OSDF_CHECK_SECONDS``, and each change of the
verdict is written as a drop-in and applied with a reconfig, which makes the startd ask
its plugins again (``HasFileTransferPluginMethods``).

Light on purpose (standard library only): the long-lived supervisor imports it.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from ospool_ep.pilot.dropin import CONFIG_SUBDIR

SUBJECT = "OSDF"
PLUGIN_COMMAND = "ospool-ep-pelican-plugin"
DROPIN_FILE = f"{CONFIG_SUBDIR}/90-osdf.conf"
SELFTEST_SECONDS = 120.0
"""What OSG's pilot allows its plugin test (pelican-setup: timeout 120s)."""
NOT_TESTED = "not tested yet: the first test runs when the pilot has started"
MAX_REASON = 300
PLUGIN_KNOBS = ("STASH_PLUGIN", "OSDF_PLUGIN")
"""HTCondor 25's FILETRANSFER_PLUGINS names $(STASH_PLUGIN); OSG sets both."""


@dataclass(frozen=True)
class OsdfPlan:
    plugin: str | None = None
    """The plugin's path; None when this image cannot have one (``unavailable`` says why)."""
    unavailable: str = "not planned"
    check_seconds: int = 1800


def installed_plugin() -> tuple[str | None, str]:
    """(the plugin's path, "") or (None, why not): the console script beside this
    interpreter's (or on PATH) and the Pelican client library it needs."""
    if importlib.util.find_spec("pelicanfs") is None:
        return None, "this image has no Pelican client (the Python package pelicanfs)"
    here = str(Path(sys.executable).parent)
    search = os.pathsep.join((here, os.environ.get("PATH", os.defpath)))
    found = shutil.which(PLUGIN_COMMAND, path=search)
    if found is None:
        return None, f"{PLUGIN_COMMAND} is not installed"
    return str(Path(found).absolute()), ""


@dataclass(frozen=True)
class Verdict:
    ok: bool
    reason: str
    """The test's own line: what was fetched from where, or why it failed."""


def verdict_from(exit_status: int | None, output: bytes) -> Verdict:
    """The self-test child's end: its wait status (None: killed at its deadline), its stdout."""
    lines = [line.strip() for line in output.decode("utf-8", "replace").splitlines()]
    said = next((line for line in reversed(lines) if line), "")
    if exit_status is None:
        return Verdict(False, f"the test took longer than {SELFTEST_SECONDS:g} s")
    if os.WIFEXITED(exit_status) and os.WEXITSTATUS(exit_status) == 0:
        return Verdict(True, said or "ok")
    if os.WIFSIGNALED(exit_status):
        return Verdict(False, said or f"the test was killed by signal {os.WTERMSIG(exit_status)}")
    return Verdict(False, said or f"the test failed (exit {os.WEXITSTATUS(exit_status)})")


def config_text(plan: OsdfPlan, verdict: Verdict | None) -> str:
    """The configuration for a verdict (None: before the first test; also at render)."""
    lines = [
        "# OSDF (Pelican) transfers: osdf, pelican and stash URLs.",
        "ENABLE_URL_TRANSFERS = True",
    ]
    if plan.plugin is not None and verdict is not None and verdict.ok:
        lines.append(f"# Offered: the plugin's test passed: {_clean(verdict.reason)}")
        lines += [f"{knob} = {plan.plugin}" for knob in PLUGIN_KNOBS]
        return "\n".join(lines) + "\n"
    if plan.plugin is None:
        reason = f"no plugin: {plan.unavailable}"
    else:
        reason = NOT_TESTED if verdict is None else verdict.reason
    lines.append("# Not offered until the plugin's test passes.")
    lines += [f"{knob} =" for knob in PLUGIN_KNOBS]
    lines.append(f"OSDF_FAIL_REASON = {quoted(reason)}")
    lines.append("STARTD_ATTRS = $(STARTD_ATTRS) OSDF_FAIL_REASON")
    return "\n".join(lines) + "\n"


def quoted(text: str) -> str:
    """A ClassAd string literal holding no escape, macro or line break: one config value."""
    return f'"{_clean(text)}"'


_UNSAFE = {"$": "?", '"': "'", "\\": "/"}


def _clean(text: str) -> str:
    """The reason comes from the plugin's output (a server's words may be in it)."""
    cleaned = "".join(_UNSAFE.get(c, c) if c.isprintable() else "?" for c in text)
    return cleaned if len(cleaned) <= MAX_REASON else cleaned[: MAX_REASON - 3] + "..."
