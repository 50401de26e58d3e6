"""The host launcher shipped by the RPM (``ospool-ep launch``): standard library only,
Python 3.9. Its import closure is computed by a test and is what the RPM installs."""
