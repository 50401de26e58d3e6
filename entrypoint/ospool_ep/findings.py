"""Findings: the PASS/WARN/FAIL results every validation and detection step reports.

Validators never raise on bad input and never print; they append findings to a
:class:`Findings` list and carry on, so one run reports every problem at once.
The command line turns the list into a report and an exit code (SPEC 3, 5).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TextIO

from ospool_ep.exitcodes import ExitCode


class Status(enum.Enum):
    PASS = "PASS"  # noqa: S105 - a status, not a password
    WARN = "WARN"
    FAIL = "FAIL"


class Kind(enum.Enum):
    """Who has to act on a FAIL: the site's configuration, or the host."""

    CONFIG = "config"
    """Fixable by changing the environment, token or attribute file (exit 78)."""
    ENVIRONMENT = "environment"
    """A facility of the host is missing (HTCondor, disk, CVMFS) (exit 69)."""


@dataclass(frozen=True)
class Finding:
    subject: str
    """What was checked: a variable name, a file, ``file:line``."""
    status: Status
    message: str
    """What was found, in words an admin understands. Never secret text."""
    fix: str = ""
    """How to fix it; empty for a PASS."""
    kind: Kind = Kind.CONFIG

    def as_line(self) -> str:
        text = f"{self.status.value:4}  {self.subject}: {self.message}"
        if self.fix:
            text += f" -- {self.fix}"
        return text

    def as_dict(self) -> dict[str, str]:
        return {
            "status": self.status.value,
            "subject": self.subject,
            "message": self.message,
            "fix": self.fix,
            "kind": self.kind.value,
        }


class Findings(list[Finding]):
    """An ordered list of findings with shorthands to add them."""

    def passed(self, subject: str, message: str, *, kind: Kind = Kind.CONFIG) -> None:
        self.append(Finding(subject, Status.PASS, message, "", kind))

    def warn(self, subject: str, message: str, fix: str = "", *, kind: Kind = Kind.CONFIG) -> None:
        self.append(Finding(subject, Status.WARN, message, fix, kind))

    def fail(self, subject: str, message: str, fix: str = "", *, kind: Kind = Kind.CONFIG) -> None:
        self.append(Finding(subject, Status.FAIL, message, fix, kind))

    @property
    def failures(self) -> list[Finding]:
        return [f for f in self if f.status is Status.FAIL]

    def has_failures(self) -> bool:
        return any(f.status is Status.FAIL for f in self)

    def exit_code(self) -> ExitCode:
        """78 if any configuration FAIL (it wins), else 69 if any environment FAIL, else 0."""
        kinds = {f.kind for f in self.failures}
        if Kind.CONFIG in kinds:
            return ExitCode.CONFIG
        if Kind.ENVIRONMENT in kinds:
            return ExitCode.UNAVAILABLE
        return ExitCode.OK


def report(findings: Findings, *, out: TextIO, title: str) -> None:
    """``title: N FAIL, N WARN, N PASS`` (the counts there are, worst first) and one
    line per finding."""
    counts = {status: sum(f.status is status for f in findings) for status in Status}
    worst_first = (Status.FAIL, Status.WARN, Status.PASS)
    summary = ", ".join(f"{counts[s]} {s.value}" for s in worst_first if counts[s]) or "0 FAIL"
    print(f"{title}: {summary}", file=out)
    for finding in findings:
        print(finding.as_line(), file=out)


def verdict(code: ExitCode) -> str:
    """The last line of a report: what the exit code means for the admin."""
    return {
        ExitCode.OK: "ready to run",
        ExitCode.CONFIG: "configuration errors: fix the FAIL lines above (exit 78)",
        ExitCode.UNAVAILABLE: "this host lacks something the pilot needs (exit 69)",
    }.get(code, code.name)
