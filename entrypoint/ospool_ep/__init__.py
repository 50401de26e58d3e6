"""ospool-ep: an OSPool backfill Execution Point (HTCondor startd pilot) supervisor."""

__version__ = "0.1.0"
