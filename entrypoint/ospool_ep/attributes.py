"""Attributes: the extra-attributes file turned into validated machine-ad name/expression pairs.

The file (SPEC 4.2, 5.4; upstream ``/etc/osg/extra-attributes.cfg``) holds
``NAME = expression`` lines that the renderer writes into HTCondor configuration
and appends to ``STARTD_ATTRS``, so each one appears in the slot ad. Because
they become configuration lines, a name may never be something HTCondor or the
pilot already means (``START`` would replace the pilot's START policy, upstream's
known hole), and a value may never be more than one ClassAd expression (a
newline, trailing backslash or ``$(`` would add or alter other knobs).

:func:`parse_extra_attributes` is pure: the caller passes the text.
:func:`load_extra_attributes_file` is the one I/O helper that reads the mount.
"""

from __future__ import annotations

import os
import re
import stat
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from ospool_ep.classad_text import expression_error
from ospool_ep.findings import Findings


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
    # Attributes the startd (or the pilot, SPEC 6.2, 9.3) puts into the machine
    # ad itself (HTCondor manual, "Machine ClassAd Attributes",
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
    GLIDEIN_Site GLIDEIN_ResourceName GLIDEIN_ToRetire GLIDEIN_ToDie
    ACCEPT_JOBS_FOR_HOURS ACCEPT_IDLE_MINUTES IsOsgVoContainer OSG_NODE_VALIDATED Is_ITB_Site
    HAS_SINGULARITY OSG_SINGULARITY_VERSION
    """
)

DENIED_KNOBS: frozenset[str] = _words(
    # HTCondor knobs that the pilot sets or whose change alters what the pilot
    # offers, accepts, trusts or where it writes (manual, "Configuration Macros").
    """
    START RANK PREEMPT SUSPEND CONTINUE KILL WANT_HOLD WANT_HOLD_REASON WANT_HOLD_SUBCODE
    WANT_VACATE WANT_SUSPEND PERIODIC_CHECKPOINT MAXJOBRETIREMENTTIME IS_OWNER
    CLAIM_WORKLIFE KILLING_TIMEOUT MACHINE_MAX_VACATE_TIME MEMORY_EXCEEDED DISK_EXCEEDED
    SUSPEND_VANILLA CONTINUE_VANILLA PREEMPT_VANILLA KILL_VANILLA WANT_SUSPEND_VANILLA
    WANT_VACATE_VANILLA IS_VALID_CHECKPOINT_PLATFORM
    NUM_CPUS MEMORY DISK RESERVED_MEMORY RESERVED_DISK RESERVED_SWAP
    DAEMON_LIST CONDOR_HOST COLLECTOR_HOST CONDOR_ADMIN CONDOR_IDS CONDOR_CONFIG
    LOCAL_DIR LOG EXECUTE SPOOL LOCK RUN TMP_DIR RELEASE_DIR BIN SBIN LIB LIBEXEC ETC SHARE
    CRED_STORE_DIR
    INCLUDE LOCAL_CONFIG_FILE LOCAL_CONFIG_DIR REQUIRE_LOCAL_CONFIG_FILE
    TRUST_DOMAIN UID_DOMAIN FILESYSTEM_DOMAIN DEFAULT_DOMAIN_NAME NO_DNS
    NETWORK_HOSTNAME NETWORK_INTERFACE BIND_ALL_INTERFACES PRIVATE_NETWORK_NAME
    PRIVATE_NETWORK_INTERFACE TCP_FORWARDING_HOST HIGHPORT LOWPORT IN_HIGHPORT IN_LOWPORT
    OUT_HIGHPORT OUT_LOWPORT WANT_UDP_COMMAND_SOCKET
    STARTER_JOB_ENVIRONMENT USER_JOB_WRAPPER ENVIRONMENT JOB_RENICE_INCREMENT
    ASSIGN_CPU_AFFINITY BASE_CGROUP MOUNT_UNDER_SCRATCH MOUNT_PRIVATE_DEV_SHM
    EXECUTE_LOGIN_IS_DEDICATED DEDICATED_EXECUTE_ACCOUNT_REGEXP ENCRYPT_EXECUTE_DIRECTORY
    CONSOLE_DEVICES RUNBENCHMARKS CREATE_CORE_FILES ABORT_ON_EXCEPTION MAIL
    FULL_HOSTNAME HOSTNAME IP_ADDRESS TILDE SUBSYSTEM LOCALNAME USERNAME
    START_EXTRA OSG_PROJECT_NAME OSG_SQUID_LOCATION OSG_SITE_NAME RETIREMENT_HOURS POOL ITB TOKEN
    TOKEN_DIR EXTRA_ATTRIBUTES_FILE EXTRA_JOB_ENV MEMORY_OVERHEAD_MB MIN_DISK_GB
    SHUTDOWN_GRACE_SECONDS LOG_FORMAT METRICS_PORT TOPOLOGY_CHECK
    """
    # The last three rows are the pilot's own inputs (SPEC 4.1): the renderer may
    # define them as macros, so an attribute must not shadow them.
)

DENIED_PREFIXES: tuple[str, ...] = (
    # Knob families (security, daemons, slots, networking, containers, GPUs,
    # custom resources) and the pilot's own attribute families. Longest first is
    # not needed: any match denies.
    "SEC_",
    "ALLOW_",
    "DENY_",
    "START_",
    "STARTD_",
    "STARTER_",
    "MASTER_",
    "SHARED_PORT_",
    "PROCD_",
    "SLOT",
    "NUM_",
    "CCB_",
    "COLLECTOR_",
    "NEGOTIATOR_",
    "SCHEDD_",
    "DAEMON_",
    "CONDOR_",
    "USE_",
    "MAX_",
    "ENABLE_",
    "UPDATE_",
    "NETWORK_",
    "AUTH_",
    "SSL_",
    "SCITOKENS_",
    "CGROUP_",
    "JOB_",
    "WANT_",
    "DETECTED_",
    "MACHINE_RESOURCE_",
    "OFFLINE_",
    "GPU_",
    "ENVIRONMENT",
    "DOCKER",
    "SINGULARITY",
    "APPTAINER",
    "HIBERNAT",
    "VM_",
    "BACKFILL",
    "PREEN",
    "BENCHMARKS_",
    "GLIDEIN_",
    "CVMFS",
    "HAS_CVMFS_",
    "OSPOOL",
    "PILOT_",
    "NOTIFY_",
    # Attribute families the startd generates (statistics, child slots, GPUs).
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

DENIED_SUFFIXES: tuple[str, ...] = (
    # Per-daemon log, debug and timing knobs (<SUBSYS>_LOG, ALL_DEBUG,
    # UPDATE_INTERVAL, NOT_RESPONDING_TIMEOUT, ...): the supervisor tails the logs.
    "_LOG",
    "_DEBUG",
    "_INTERVAL",
    "_TIMEOUT",
)

_RESERVED_UPPER = frozenset(w.upper() for w in RESERVED_WORDS)
_KEYWORDS_UPPER = frozenset(w.upper() for w in CONFIG_KEYWORDS)
_PUBLISHED_UPPER = frozenset(w.upper() for w in STARTD_PUBLISHED)
_KNOBS_UPPER = frozenset(w.upper() for w in DENIED_KNOBS)
_PREFIXES_UPPER = tuple(p.upper() for p in DENIED_PREFIXES)
_SUFFIXES_UPPER = tuple(s.upper() for s in DENIED_SUFFIXES)

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
    """Every rule of SPEC 5.4 that a well-formed ``name`` breaks (case-insensitive)."""
    upper = name.upper()
    reasons: list[str] = []
    if upper in _RESERVED_UPPER:
        reasons.append("is a ClassAd reserved word or scope name")
    if upper in _KEYWORDS_UPPER:
        reasons.append("is a statement keyword of HTCondor's configuration language")
    if upper in _PUBLISHED_UPPER:
        reasons.append("is an attribute the startd or the pilot publishes itself")
    if upper in _KNOBS_UPPER:
        reasons.append("is an HTCondor configuration knob the pilot sets or depends on")
    reasons.extend(
        f"starts with the reserved prefix {prefix!r} (HTCondor knobs and attributes)"
        for prefix, prefix_upper in zip(DENIED_PREFIXES, _PREFIXES_UPPER, strict=True)
        if upper.startswith(prefix_upper)
    )
    reasons.extend(
        f"ends with the reserved suffix {suffix!r} (HTCondor daemon knobs)"
        for suffix, suffix_upper in zip(DENIED_SUFFIXES, _SUFFIXES_UPPER, strict=True)
        if upper.endswith(suffix_upper)
    )
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
            findings.passed(source, f"{len(attributes)} extra attributes: {names}")
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
