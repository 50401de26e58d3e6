"""The process exit codes of every ospool-ep command, in one table (SPEC 7.4).

systemd units and Kubernetes manifests depend on these numbers: 78 is never
retried (``RestartPreventExitStatus=78``), so keep them stable.
"""

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    """Ended normally: retired, idled out, drained on request; or a check passed."""
    NOT_HEALTHY = 1
    """``ospool-ep health``: the pilot is not (yet) healthy or ready."""
    USAGE = 2
    """Command-line usage error (argparse's own code)."""
    UNAVAILABLE = 69
    """EX_UNAVAILABLE: a needed facility is missing (HTCondor, CVMFS, scratch space)."""
    SOFTWARE = 70
    """EX_SOFTWARE: condor_master ended abnormally, or an internal error."""
    CONFIG = 78
    """EX_CONFIG: the site's configuration is wrong (token, environment, attributes)."""
