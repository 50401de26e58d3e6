"""CVMFS: the plan (bind, cvmfsexec, none), cvmfsexec itself, and the stdlib-only
probe the startd runs as a cron job."""
