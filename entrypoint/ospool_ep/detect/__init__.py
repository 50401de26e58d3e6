"""What this machine offers: cgroups, limits, the offer, GPUs, Apptainer."""
