"""The in-container runtime: plan, render, prepare, hand-off, supervise, services."""
