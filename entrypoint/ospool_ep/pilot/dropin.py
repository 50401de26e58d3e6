"""Drop-in: the configuration file the supervisor writes when asked to stop (SPEC 7.2).

Light on purpose (standard library only): the long-lived supervisor writes it,
and must not load the renderer for it. :mod:`ospool_ep.pilot.render` uses the same
functions for the lifetime policy it renders at start.
"""

from __future__ import annotations

CONFIG_SUBDIR = "config.d"
DRAIN_FILE = f"{CONFIG_SUBDIR}/95-drain.conf"


OVER_ITS_REQUEST = (
    "(JobUniverse != 13 && MemoryUsage =!= undefined && MemoryUsage > Memory)"
    " || (JobUniverse != 13 && DiskUsage =!= undefined && DiskUsage > Disk)"
)
"""HTCondor's MEMORY_EXCEEDED and DISK_EXCEEDED (param_info.in, POLICY:HOLD_IF_*_EXCEEDED),
written out: a configuration value here cannot use macros (render refuses ``$``)."""


def retirement_until(deadline: int | float) -> str:
    """MAXJOBRETIREMENTTIME for "may run until ``deadline``": it counts from the job's start.

    A job over its memory or disk request gets none (-1), as HTCondor's hold policies
    set it: they wrap the MAXJOBRETIREMENTTIME defined before them, and this one is
    defined after them (and again by the drain), so without this term the job would
    retire, i.e. keep running, until the deadline instead of being held."""
    retire = f"ifThenElse(MY.JobStart =?= undefined, 0, {int(deadline)} - MY.JobStart)"
    return f"ifThenElse({OVER_ITS_REQUEST}, -1, {retire})"


def drain_config(*, deadline: float) -> str:
    """The drop-in written on SIGTERM: no new jobs, running ones retire by ``deadline``."""
    return (
        "# Written by the supervisor when asked to stop (SPEC 7.2).\n"
        "START = False\n"
        f"MAXJOBRETIREMENTTIME = {retirement_until(deadline)}\n"
    )
