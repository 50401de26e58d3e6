"""Attributes: the extra-attributes file turned into validated machine-ad name/expression pairs.

The file (SPEC 4.2, 5.4; upstream ``/etc/osg/extra-attributes.cfg``) holds
``NAME = expression`` lines that the renderer writes into HTCondor configuration
and appends to ``STARTD_ATTRS``, so each one appears in the slot ad. Because
they become configuration lines, a name may never be something HTCondor or the
pilot already means (``START`` would replace the pilot's START policy, upstream's
known hole), and a value may never be more than one ClassAd expression (a
newline, trailing backslash or ``$(`` would add or alter other knobs).

Denied are exactly the names that would change the pilot (SPEC 5.4): HTCondor's
own settings (its param table, shipped as ``htcondor_knobs.txt``, plus the few it
reads without listing and the families it composes), the attributes the startd
and the pilot publish, and ClassAd's reserved words. Everything else a site may
publish, ``GLIDEIN_Country`` and ``KUBERNETES_NAMESPACE`` included.

:func:`parse_extra_attributes` is pure: the caller passes the text.
:func:`load_extra_attributes_file` is the one I/O helper that reads the mount.
"""

from __future__ import annotations

import os
import re
import stat
import unicodedata
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from ospool_ep.findings import Findings
from ospool_ep.inputs.classad import expression_error, expression_fix


@dataclass(frozen=True)
class ExtraAttribute:
    """One validated line of the extra-attributes file."""

    name: str
    """Attribute (and config macro) name, as written; unique case-insensitively."""
    expression: str
    """The validated ClassAd expression text, stripped of surrounding blanks."""
    line: int
    """1-based line number in the file, for messages."""


_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _words(text: str) -> frozenset[str]:
    """The blank-separated words of ``text``: keeps the long tables below readable."""
    return frozenset(text.split())


RESERVED_WORDS: frozenset[str] = _words(
    # ClassAd literals, operators spelled as words, and scope names (HTCondor
    # manual, "ClassAd Syntax"): an attribute by these names cannot be referenced.
    "true false undefined error is isnt parent my target self root toplevel currenttime"
)

CONFIG_KEYWORDS: frozenset[str] = _words(
    # Statements of HTCondor's configuration language (manual, "Configuration
    # File Syntax"). Checked against HTCondor 25.14: "if = 1", "else = 1" and
    # "endif = 1" make every daemon exit with a configuration error; "include"
    # and "use" are accepted as macros today but are statements with ':'.
    "if elif else endif include use error warning"
)

STARTD_PUBLISHED: frozenset[str] = _words(
    # Attributes the startd puts into the machine ad itself (HTCondor manual,
    # "Machine ClassAd Attributes",
    # docs/classad-attributes/machine-classad-attributes.rst). Redefining one
    # would either be ignored or silently change matchmaking. The Cloud*
    # attributes are left to sites: HTCondor publishes them only when
    # feature:CommonCloudAttributes* is on, which the pilot never turns on.
    """
    AcceptedWhileDraining Activity AddressV1 Arch AssignedGPUs AuthenticatedIdentity
    AuthenticationMethod AvailSince AvailTime AvailTimeEstimate CanHibernate
    CheckpointPlatform ClaimId ClaimIdList ClockDay ClockMin CondorLoadAvg CondorPlatform
    CondorVersion ConsoleIdle CpuBusy CpuBusyTime CpuCacheSize CpuFamily CpuIsBusy CpuModel
    CpuModelNumber Cpus CurrentRank CurrentTime DaemonCoreDutyCycle DaemonLastReconfigTime
    DaemonStartTime DetectedCpus DetectedGPUs DetectedMemory Disk DockerVersion Draining
    DrainingRequestId DynamicSlot EnteredCurrentActivity EnteredCurrentState
    ExpectedMachineGracefulDrainingBadput ExpectedMachineGracefulDrainingCompletion
    ExpectedMachineQuickDrainingBadput ExpectedMachineQuickDrainingCompletion
    FileSystemDomain GlobalJobId GPUs HardwareAddress HasContainer HasDocker
    HasEncryptExecuteDirectory HasFileTransfer HasFileTransferPluginMethods HasIOProxy
    HasJICLocalConfig HasJICLocalStdin HasJobDeferral HasJobTransferPlugins HasMPI
    HasPerFileEncryption HasReconnect HasSelfCheckpointTransfers HasSingularity HasSshd
    HasTDP HasUserNamespaces HasVM HibernationLevel HibernationState
    HibernationSupportedStates ImageSize IsWakeAble IsWakeOnLanEnabled IsWakeOnLanSupported
    JobId JobRankPreemptions JobStart JobStarts JobUniverse JobUserPrioPreemptions
    KeyboardIdle KFlops LastBenchmark LastDrainStartTime LastDrainStopTime
    LastFetchWorkCompleted LastFetchWorkSpawned LastHeardFrom LastUpdate LoadAvg Machine
    MachineMaxVacateTime MachineResources MaxJobRetirementTime Memory Microarch Mips
    MyAddress MyCurrentTime MyType Name NextFetchWorkDelay NextJobStartDelay
    NumDynamicSlots NumPids OfflineUniverses OpSys OpSysAndVer OpSysLegacy OpSysLongName
    OpSysMajorVer OpSysName OpSysShortName OpSysVer PartitionableSlot PublicClaimId Rank
    RemoteAutoregroup RemoteGroup RemoteNegotiatingGroup RemoteOwner RemoteUser
    Requirements RetirementTimeRemaining SingularityVersion SlotID SlotType SlotTypeID
    SlotWeight Start StartdIpAddr StarterAbilityList State SubnetMask TargetType
    TotalCondorLoadAvg TotalCpus TotalDisk TotalGPUs TotalLoadAvg TotalMemory TotalSlotCpus
    TotalSlotDisk TotalSlotGPUs TotalSlotMemory TotalSlots TotalVirtualMemory UidDomain
    Unhibernate UpdateSequenceNumber UpdatesHistory UpdatesLost UpdatesSequenced
    UpdatesTotal VirtualMemory WithinResourceLimits
    has_avx has_avx2 has_avx512bw has_avx512dnni has_avx512dq has_avx512f has_avx512vnni
    has_sse4_1 has_sse4_2 has_ssse3
    AvgTransferInputMB AvgTransferOutputMB BrokenContextAds BrokenSlotCpus BrokenSlotDisk
    BrokenSlotMemory CgroupEnforced ClaimEndTime CleanupCategoryCounts ClientMachine
    DetectedDisk DockerCachedImageSizeMb DockerOfflineReason DotNetVersions HasRotationalScratch
    HasSandboxImage HasSIF IsEnforcingDiskUsage IsWakeEnabled JobBusyTimeAvg JobBusyTimeCount
    JobBusyTimeMax JobBusyTimeMin JobDurationAvg JobDurationCount JobDurationMax JobDurationMin
    JobPreemptions JobVM_VCPUS LastPeriodicCheckpoint LvmBackingStore LvmDetectedDisk
    LvmIsThinProvisioning LvmNonCondorDiskUsage LvmUsingLoopback MachineLastMatchTime
    MaxClaimTime Offline PreemptingOwner PreemptingRank PreemptingUser PslotRollupInformation
    RemoteProject RemoteScheddName SingularityUserNamespaces SlotBrokenCode SlotBrokenReason
    VMOfflineReason VMOfflineTime WindowsBuildNumber WindowsMajorVersion WindowsMinorVersion
    """
)

STARTD_PUBLISHED_FAMILIES: tuple[str, ...] = (
    # Attribute families the startd generates (statistics, child slots, custom
    # resources and GPUs: Total<Res>, Detected<Res>, Assigned<Res>, GPUs_<prop>).
    "Total",
    "Detected",
    "Child",
    "MonitorSelf",
    "Recent",
    "Updates",
    "Assigned",
    "GPUs_",
    "CUDA",
    "DeviceGPUs",
)


def _knob_table() -> frozenset[str]:
    """HTCondor's own settings (its param table and the macros it defines itself),
    upper-cased: ``htcondor_knobs.txt``, generated by ``scripts/htcondor_knobs.py``."""
    text = (resources.files("ospool_ep.inputs") / "htcondor_knobs.txt").read_text(encoding="ascii")
    lines = (line.strip() for line in text.splitlines())
    return frozenset(line.upper() for line in lines if line and not line.startswith("#"))


HTCONDOR_KNOBS: frozenset[str] = _knob_table()

UNTABLED_KNOBS: frozenset[str] = _words(
    # Settings HTCondor reads that its param table does not list (HTCondor manual,
    # "Configuration Macros"; checked against 25.14's table): the startd's core
    # knobs and policy expressions, and what the pilot's policy templates set.
    """
    CONDOR_HOST CONDOR_IDS CONDOR_CONFIG RANK MAXJOBRETIREMENTTIME MEMORY DISK NUM_SLOTS
    RESERVED_DISK GPU_DISCOVERY_EXTRA CRED_STORE_DIR SHARE TILDE MAX_NUM_DEFAULT_LOG SECURITY_MODEL
    DAEMON_SHUTDOWN DAEMON_SHUTDOWN_FAST
    WANT_HOLD WANT_HOLD_REASON WANT_HOLD_SUBCODE MEMORY_EXCEEDED DISK_EXCEEDED
    HOLD_REASON_MEMORY_EXCEEDED HOLD_REASON_DISK_EXCEEDED
    SUSPEND_VANILLA CONTINUE_VANILLA PREEMPT_VANILLA KILL_VANILLA WANT_SUSPEND_VANILLA
    WANT_VACATE_VANILLA MACHINE_MAX_VACATE_TIME IS_VALID_CHECKPOINT_PLATFORM
    EXECUTE_LOGIN_IS_DEDICATED DEDICATED_EXECUTE_ACCOUNT_REGEXP
    """
)

COMPOSED_KNOBS: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    # Settings HTCondor builds from a fixed part and a variable one, so no table
    # lists them (HTCondor manual, "Configuration Macros"), each with what it is.
    (re.compile(pattern, re.IGNORECASE), meaning)
    for pattern, meaning in (
        (r"(SEC|ALLOW|DENY|HOSTALLOW|HOSTDENY)_\w+", "a security setting per permission level"),
        (
            r"(MAX_)?(MASTER|STARTD|STARTER|SHARED_PORT|PROCD)_\w+",
            "a per-daemon setting of the pilot's daemons, like STARTD_ARGS or STARTD_CRON_*",
        ),
        (r"(NUM_SLOTS_TYPE_\d+|SLOT_TYPE_\d+(_\w+)?|SLOT\d+_\w+)", "a slot layout setting"),
        (
            r"((OFFLINE_)?MACHINE_RESOURCE_\w+|ENVIRONMENT_(VALUE_)?FOR_\w+)",
            "a custom machine resource setting (GPUs)",
        ),
        (r"SINGULARITY_\w+", "a setting of the jobs' Apptainer containment"),
    )
)

PILOT_CONFIG: frozenset[str] = _words(
    # What the pilot's templates (condor_config.d/) set that is neither in HTCondor's
    # lists above nor published; tests/unit/inputs/test_attributes.py renders every template
    # branch and checks that HTCondor sees no name outside the denied ones.
    "GLIDEIN_SINGULARITY_BINDPATH"
)

PILOT_PUBLISHED: frozenset[str] = _words(
    # Machine-ad attributes the pilot publishes (SPEC 6.2, 9.3; render.py, templates).
    """
    GLIDEIN_Site GLIDEIN_ResourceName GLIDEIN_ToRetire GLIDEIN_ToDie
    ACCEPT_JOBS_FOR_HOURS ACCEPT_IDLE_MINUTES IsOsgVoContainer OSG_NODE_VALIDATED Is_ITB_Site
    OSG_PROJECT_NAME HAS_SINGULARITY OSG_SINGULARITY_VERSION OSG_SINGULARITY_IMAGE_DEFAULT
    OSPool GLIDECLIENT_Group OSG_PROJECT_RESTRICTION START_EXTRA OSDF_FAIL_REASON
    """
)

PILOT_PUBLISHED_FAMILIES: tuple[re.Pattern[str], ...] = tuple(
    # The pilot's own families: OSPOOL_EP_*, the CVMFS cron job's per-repository
    # attributes (cvmfs_probe: HAS_CVMFS_<repo>, CVMFS_<repo>_REVISION/_NIOERR/_LAST_IOERR)
    # and the job image's OS attributes (SPEC 6.2: OSG_OS_*, upstream's old OSGVO_OS_*).
    re.compile(pattern, re.IGNORECASE)
    for pattern in (
        r"OSPOOL_EP_\w+",
        r"HAS_CVMFS_\w+",
        r"CVMFS_\w+_(REVISION|NIOERR|LAST_IOERR)",
        r"OSG_OS_\w+",
        r"OSGVO_OS_\w+",
    )
)

_RESERVED_UPPER = frozenset(w.upper() for w in RESERVED_WORDS)
_KEYWORDS_UPPER = frozenset(w.upper() for w in CONFIG_KEYWORDS)
_STARTD_UPPER = frozenset(w.upper() for w in STARTD_PUBLISHED)
_STARTD_FAMILIES_UPPER = tuple(f.upper() for f in STARTD_PUBLISHED_FAMILIES)
_PILOT_UPPER = frozenset(w.upper() for w in PILOT_PUBLISHED | PILOT_CONFIG)
_UNTABLED_UPPER = frozenset(w.upper() for w in UNTABLED_KNOBS)

_SHOWN_MAX = 60
_READ_LIMIT = 1024 * 1024
"""Bytes; an extra-attributes file is a few lines, a bigger one is a wrong mount."""

_FIX_FORMAT = (
    'write one attribute per line as NAME = expression, e.g. KUBERNETES_NAMESPACE = "default"; '
    "comments are lines that start with '#'"
)
_FIX_NAME = "use only letters, digits and '_' in the name, starting with a letter or '_'"
_FIX_POLICY = (
    "choose a name of your own, e.g. with your site or project as prefix; "
    "these names belong to ClassAds, HTCondor or the pilot"
)


@dataclass(frozen=True, slots=True)
class _Problem:
    message: str
    fix: str


def _invisible(text: str) -> bool:
    """True if ``text`` holds characters no admin can see or that break lines.

    Beyond ASCII control characters: C1 controls, format characters (zero-width
    space, a BOM in the middle), and Unicode line/paragraph separators.
    """
    return any(
        unicodedata.category(ch) in {"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"} for ch in text
    )


def _shown(text: str) -> str:
    """``text`` quoted for a message, shortened; withheld if it holds control characters."""
    if _invisible(text):
        return "(withheld: contains control or invisible characters)"
    if len(text) > _SHOWN_MAX:
        return repr(text[:_SHOWN_MAX]) + "..."
    return repr(text)


def _name_policy_reasons(name: str) -> list[str]:
    """Every rule of SPEC 5.4 that a well-formed ``name`` breaks (case-insensitive, as
    HTCondor reads knob and attribute names)."""
    upper = name.upper()
    reasons: list[str] = []
    if upper in _RESERVED_UPPER:
        reasons.append("is a ClassAd reserved word or scope name")
    if upper in _KEYWORDS_UPPER:
        reasons.append("is a statement keyword of HTCondor's configuration language")
    if upper in HTCONDOR_KNOBS or upper in _UNTABLED_UPPER:
        reasons.append("is an HTCondor configuration setting")
    reasons.extend(
        f"is an HTCondor configuration setting ({meaning})"
        for pattern, meaning in COMPOSED_KNOBS
        if pattern.fullmatch(name)
    )
    if upper in _STARTD_UPPER or upper.startswith(_STARTD_FAMILIES_UPPER):
        reasons.append("is an attribute the startd publishes itself")
    if upper in _PILOT_UPPER or any(p.fullmatch(name) for p in PILOT_PUBLISHED_FAMILIES):
        reasons.append("is an attribute or setting the pilot publishes itself")
    return reasons


def _has_unquoted_hash(value: str) -> bool:
    """True if ``value`` has a '#' outside ClassAd string literals and quoted names."""
    quote = ""
    escaped = False
    for ch in value:
        if quote:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == quote:
                quote = ""
        elif ch in "\"'":
            quote = ch
        elif ch == "#":
            return True
    return False


def _value_problem(name: str | None, value: str) -> _Problem | None:
    """Why ``value`` is not one safe ClassAd expression for attribute ``name``, or None.

    ``name`` is None when the name itself is malformed (its problem is reported apart).
    """
    who = f"attribute {name!r}" if name else "the attribute on this line"
    example = name or "NAME"
    if value.endswith("\\"):
        return _Problem(
            f"{who}: the value ends in a backslash; multi-line values are not supported",
            "put the whole expression on one line, without a trailing backslash",
        )
    if _has_unquoted_hash(value):
        return _Problem(
            f"{who}: the value {_shown(value)} contains '#', which is not a "
            "comment in HTCondor configuration ('#' only starts a comment at the beginning of "
            "a line), so it is not a valid ClassAd expression",
            "move the comment to its own line starting with '#'",
        )
    reason = expression_error(value)
    if reason is None and _invisible(value):
        reason = "contains an invisible or line-breaking Unicode character"
    if reason is None:
        return None
    if not value:
        fix = f"give {example} a value, e.g. {example} = True, or delete the line"
    elif "$" in value:
        fix = "write the value out literally; macros are not expanded in extra attributes"
    elif expression_fix(reason):
        fix = expression_fix(reason) or ""
    elif reason.startswith("contains"):
        fix = "remove control characters, tabs, backslashes and invisible characters from the value"
    else:
        fix = 'write exactly one ClassAd expression; quote text with double quotes, e.g. "text"'
    shown = f"the value {_shown(value)}" if value else "the value"
    return _Problem(f"{who}: {shown} {reason}", fix)


def _name_problems(name: str, lineno: int, first_seen: dict[str, int]) -> list[_Problem]:
    """Problems of a line's ``name``; records well-formed names in ``first_seen``.

    ``first_seen`` maps upper-cased well-formed names to the line that had them first.
    """
    if not _NAME.fullmatch(name):
        what = "is empty" if not name else f"{_shown(name)} is not a valid name"
        return [
            _Problem(f"the attribute name {what}: it must match [A-Za-z_][A-Za-z0-9_]*", _FIX_NAME)
        ]
    problems: list[_Problem] = []
    reasons = _name_policy_reasons(name)
    if reasons:
        problems.append(
            _Problem(
                f"attribute name {name!r} is not allowed: it " + "; it ".join(reasons), _FIX_POLICY
            )
        )
    first = first_seen.setdefault(name.upper(), lineno)
    if first != lineno:
        problems.append(
            _Problem(
                f"attribute {name!r} is a duplicate: line {first} already defines it "
                "(names are case-insensitive)",
                f"keep one definition of {name} and delete the other",
            )
        )
    return problems


def _check_line(
    line: str, lineno: int, first_seen: dict[str, int]
) -> tuple[list[_Problem], ExtraAttribute | None]:
    """All problems of one non-blank, non-comment line, and its attribute if it has none."""
    if "=" not in line:
        shown = _shown(line.strip(" \t"))
        return [_Problem(f"line {shown} has no '=': expected NAME = expression", _FIX_FORMAT)], None
    raw_name, _, raw_value = line.partition("=")
    name = raw_name.strip(" \t")
    value = raw_value.strip(" \t")
    problems = _name_problems(name, lineno, first_seen)
    value_problem = _value_problem(name if _NAME.fullmatch(name) else None, value)
    if value_problem is not None:
        problems.append(value_problem)
    if problems:
        return problems, None
    return [], ExtraAttribute(name=name, expression=value, line=lineno)


def parse_extra_attributes(text: str, *, source: str, findings: Findings) -> list[ExtraAttribute]:
    """Validate extra-attributes ``text`` (SPEC 5.4); return the valid attributes in file order.

    Every problem is a FAIL with subject ``"<source>:<line>"``. One PASS naming
    the attributes (or "no extra attributes") is added only when the text has no
    FAIL. A UTF-8 BOM at the start and CRLF line ends are tolerated (HTCondor
    itself strips a trailing carriage return); any other carriage return is a
    control character and fails. Lines are split on ``\\n`` only, as HTCondor
    does: other Unicode line breaks stay inside the line and fail there.
    """
    attributes: list[ExtraAttribute] = []
    first_seen: dict[str, int] = {}
    failed = False
    for lineno, raw in enumerate(text.removeprefix("\ufeff").split("\n"), start=1):
        line = raw.removesuffix("\r")
        content = line.strip(" \t")
        if not content or content.startswith("#"):
            continue
        problems, attribute = _check_line(line, lineno, first_seen)
        for problem in problems:
            findings.fail(f"{source}:{lineno}", problem.message, problem.fix)
            failed = True
        if attribute is not None:
            attributes.append(attribute)
    if not failed:
        if attributes:
            names = ", ".join(a.name for a in attributes)
            count = f"{len(attributes)} extra attribute{'s' if len(attributes) > 1 else ''}"
            findings.passed(source, f"{count}: {names}")
        else:
            findings.passed(source, "no extra attributes")
    return attributes


def load_extra_attributes_file(path: Path, *, findings: Findings) -> list[ExtraAttribute]:
    """Read and validate the extra-attributes file at ``path``; a missing file is fine.

    The mount is optional (SPEC 4.2), so absence is a PASS. A dangling link, a
    directory or other non-regular file, an unreadable or oversized file, or
    text that is not UTF-8 is a FAIL naming the file.
    """
    data = _read_file(path, findings=findings)
    if data is None:
        return []
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        findings.fail(
            str(path),
            f"is not UTF-8 text (byte 0x{data[error.start]:02x} on line {line})",
            "save the file as UTF-8 (or plain ASCII) text",
        )
        return []
    return parse_extra_attributes(text, source=str(path), findings=findings)


def _read_file(path: Path, *, findings: Findings) -> bytes | None:
    """The bytes of the regular file at ``path``, or None after adding its finding.

    Opened without blocking and checked with ``fstat`` on the open descriptor,
    so a FIFO mounted by mistake cannot hang the pilot and a swapped file cannot
    slip in between the check and the read.
    """
    subject = str(path)
    fix_access = "mount the file readable by the pilot's user (uid 1000 in the image)"
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except FileNotFoundError:
        if path.is_symlink():
            findings.fail(
                subject,
                "is a symbolic link to a file that does not exist",
                "mount the extra-attributes file itself, or remove the link",
            )
        else:
            findings.passed(subject, "not present, no extra attributes")
        return None
    except OSError as error:
        findings.fail(subject, f"cannot be opened: {error.strerror or error}", fix_access)
        return None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        what = "a directory" if stat.S_ISDIR(mode) else "not a regular file"
        findings.fail(
            subject, f"is {what}", "mount a single file of NAME = expression lines at this path"
        )
        return None
    with os.fdopen(fd, "rb") as handle:
        try:
            data = handle.read(_READ_LIMIT + 1)
        except OSError as error:
            findings.fail(subject, f"cannot be read: {error.strerror or error}", fix_access)
            return None
    if len(data) > _READ_LIMIT:
        findings.fail(
            subject,
            f"is larger than {_READ_LIMIT // 1024} KiB; an extra-attributes file has a few lines",
            "check that the right file is mounted at this path",
        )
        return None
    return data
