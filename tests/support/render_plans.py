"""Test helpers shared by several test modules (from test_render.py)."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from dataclasses import replace
from pathlib import Path, PurePosixPath

from ospool_ep.detect.apptainer import ApptainerTest
from ospool_ep.detect.offer import Offer
from ospool_ep.inputs import policy
from ospool_ep.inputs.pools import resolve_pool
from ospool_ep.inputs.settings import Settings
from ospool_ep.pilot import render
from ospool_ep.pilot.containment import Containment

START_TIME = 1_790_000_000
APPTAINER_PASSED = ApptainerTest(
    path="/usr/bin/apptainer",
    version="apptainer version 1.4.5",
    detail="/usr/bin/apptainer ran a test container",
)
CONTAINED = Containment(
    contained=True,
    apptainer="/usr/bin/apptainer",
    version="apptainer version 1.4.5",
    image="/cvmfs/singularity.opensciencegrid.org/htc/rocky:9",
    binds=("/cvmfs:/cvmfs:ro",),
)
"""What a pilot with host CVMFS and a working Apptainer renders (the default)."""


def make_plan(settings: Settings | None = None, **overrides: object) -> render.PilotPlan:
    settings = settings or Settings(site="Wisconsin", resource_name="CHTC Backfill")
    rng = random.Random(42)
    lifetime = policy.plan_lifetime(
        start=START_TIME,
        accept_jobs_for_hours=settings.accept_jobs_for_hours,
        retirement_hours=settings.retirement_hours,
        walltime_seconds=settings.pilot_walltime_seconds,
        job_end_time=None,
        token_expiry=None,
        grace_seconds=settings.shutdown_grace_seconds,
        rng=rng,
    )
    pool = resolve_pool(
        pool=settings.pool, itb=settings.itb, condor_host=settings.condor_host, rng=rng
    )
    plan = render.PilotPlan(
        settings=settings,
        offer=Offer(cpus=4, memory_mb=8000),
        lifetime=lifetime,
        pool=pool,
        start=policy.start_expression(),
        name="CHTC-Backfill.host1",
        uuid="00000000-0000-4000-8000-000000000000",
        local_dir=PurePosixPath("/pilot/ospool-ep-test"),
        token_dir=PurePosixPath("/pilot/ospool-ep-test/tokens.d"),
        user="osg",
    )
    return replace(plan, **overrides)  # type: ignore[arg-type]


def read_knobs(tree: Path, *knobs: str, extra_env: dict[str, str] | None = None) -> dict[str, str]:
    """Ask HTCondor itself (the bindings, in a subprocess) what the tree says."""
    env = {**os.environ, "CONDOR_CONFIG": str(tree / "condor_config"), **(extra_env or {})}
    code = (
        "import json, sys, htcondor2\n"
        "print(json.dumps({k: str(htcondor2.param.get(k)) for k in sys.argv[1:]}))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, *knobs],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    values: dict[str, str] = json.loads(result.stdout)
    return values
