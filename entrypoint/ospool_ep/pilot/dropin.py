"""Drop-in: the configuration file the supervisor writes when asked to stop (SPEC 7.2).

Light on purpose (standard library only): the long-lived supervisor writes it,
and must not load the renderer for it. :mod:`ospool_ep.pilot.render` uses the same
functions for the lifetime policy it renders at start.
"""

from __future__ import annotations

CONFIG_SUBDIR = "config.d"
DRAIN_FILE = f"{CONFIG_SUBDIR}/95-drain.conf"


def retirement_until(deadline: int | float) -> str:
    """MAXJOBRETIREMENTTIME for "may run until ``deadline``": it counts from the job's start."""
    return f"ifThenElse(MY.JobStart =?= undefined, 0, {int(deadline)} - MY.JobStart)"


def drain_config(*, deadline: float) -> str:
    """The drop-in written on SIGTERM: no new jobs, running ones retire by ``deadline``."""
    return (
        "# Written by the supervisor when asked to stop (SPEC 7.2).\n"
        "START = False\n"
        f"MAXJOBRETIREMENTTIME = {retirement_until(deadline)}\n"
    )
