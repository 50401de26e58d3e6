"""HTCondor's file-transfer plugin protocol (the manual's "Custom File Transfer Plugins").

Pure: argument lists and request text in, typed requests out; outcomes in, result ads out.

- ``PLUGIN -classad``: what the plugin offers, one ad;
- ``PLUGIN -infile IN -outfile OUT [-upload] [-diagnostic]``: IN holds one ad per file
  (``Url``, ``LocalFileName``); OUT gets one result ad per file, in the same order, then
  the exit status says whether all succeeded (0), some failed (1), or a credential must be
  refreshed before a retry (2, ``ShouldRefresh`` in the error data);
- ``PLUGIN [-d] URL DEST``: one download, the form OSG's pilot uses for its self-test.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ospool_ep.transfer.urls import METHODS

PLUGIN_VERSION = "1.0.0"
PROTOCOL_VERSION = 4
"""Curl_plugin's in HTCondor 25: multi-file ads, TransferErrorData lists."""


class Exit(enum.IntEnum):
    SUCCESS = 0
    FAILURE = 1
    REFRESH = 2
    """HTCondor: refresh the credentials and run the plugin again."""


class UsageError(ValueError):
    """The command line or the request file is not what HTCondor writes."""


@dataclass(frozen=True)
class Capabilities:
    pass


@dataclass(frozen=True)
class Batch:
    infile: str
    outfile: str
    upload: bool = False
    diagnostic: bool = False


@dataclass(frozen=True)
class Single:
    url: str
    destination: str
    diagnostic: bool = False


@dataclass(frozen=True)
class SelfTest:
    url: str | None = None
    timeout: float | None = None


Invocation = Capabilities | Batch | Single | SelfTest


def parse_arguments(argv: Sequence[str]) -> Invocation:
    args = list(argv)
    if args == ["-classad"]:
        return Capabilities()
    if args and args[0] == "-selftest":
        return _selftest(args[1:])
    flags = {"-upload": False, "-diagnostic": False, "-d": False}
    values: dict[str, str] = {}
    positional: list[str] = []
    it = iter(args)
    for arg in it:
        if arg in flags:
            flags[arg] = True
        elif arg in ("-infile", "-outfile"):
            value = next(it, None)
            if value is None:
                raise UsageError(f"{arg} needs a file name")
            values[arg] = value
        elif arg.startswith("-"):
            raise UsageError(f"unknown option {arg}")
        else:
            positional.append(arg)
    diagnostic = flags["-diagnostic"] or flags["-d"]
    if values:
        if set(values) != {"-infile", "-outfile"} or positional:
            raise UsageError("give both -infile and -outfile, and no other arguments")
        return Batch(values["-infile"], values["-outfile"], flags["-upload"], diagnostic)
    if len(positional) == 2 and not flags["-upload"]:
        return Single(positional[0], positional[1], diagnostic)
    raise UsageError("expected -classad, -infile IN -outfile OUT [-upload], or URL DEST")


def _selftest(args: list[str]) -> SelfTest:
    url: str | None = None
    timeout: float | None = None
    it = iter(args)
    for arg in it:
        if arg == "-timeout":
            value = next(it, "")
            try:
                timeout = float(value)
            except ValueError:
                raise UsageError(f"-timeout needs seconds, not {value!r}") from None
            if not 0 < timeout <= 3600:
                raise UsageError("-timeout must be more than 0 and at most 3600 seconds")
        elif url is None and not arg.startswith("-"):
            url = arg
        else:
            raise UsageError(f"unexpected argument {arg!r} to -selftest")
    return SelfTest(url, timeout)


def capabilities() -> dict[str, Any]:
    return {
        "MultipleFileSupport": True,
        "PluginVersion": PLUGIN_VERSION,
        "PluginType": "FileTransfer",
        "ProtocolVersion": PROTOCOL_VERSION,
        "SupportedMethods": ",".join(METHODS),
    }


@dataclass(frozen=True)
class Request:
    url: str
    local_file: str


def requests_from_ads(ads: Sequence[Mapping[str, object]]) -> list[Request]:
    """One request per ad that has both ``Url`` and ``LocalFileName`` (strings)."""
    found: list[Request] = []
    for number, ad in enumerate(ads, 1):
        keys = {key.lower(): key for key in ad}
        url = ad.get(keys.get("url", ""))
        local = ad.get(keys.get("localfilename", ""))
        if url is None and local is None:
            continue  # HTCondor may add ads of its own; only transfer requests matter
        if not isinstance(url, str) or not isinstance(local, str) or not url or not local:
            raise UsageError(f"request {number} needs string Url and LocalFileName attributes")
        found.append(Request(url, local))
    if not found:
        raise UsageError("the request file names no transfer (no ad with Url and LocalFileName)")
    return found


class ErrorType(enum.StrEnum):
    """``TransferErrorData.ErrorType`` as HTCondor's own plugins report it."""

    SPECIFICATION = "Specification"
    RESOLUTION = "Resolution"
    CONTACT = "Contact"
    AUTHORIZATION = "Authorization"
    TRANSFER = "Transfer"
    PARAMETER = "Parameter"


@dataclass(frozen=True)
class Failure:
    kind: ErrorType
    message: str
    retryable: bool = False
    server: str = ""
    refresh: bool = False
    """A credential was refused or missing and the job's credentials could be refreshed."""


@dataclass(frozen=True)
class Outcome:
    request: Request
    upload: bool
    started: float
    ended: float
    method: str = ""
    total_bytes: int = 0
    """What the object had (download) or the file had (upload)."""
    moved_bytes: int = 0
    host: str = ""
    local_machine: str = ""
    attempts: int = 1
    errors: tuple[str, ...] = ()
    """Each failed attempt's reason, oldest first (DeveloperData)."""
    failure: Failure | None = None
    connect_seconds: float = 0.0

    @property
    def succeeded(self) -> bool:
        return self.failure is None


def result_ad(outcome: Outcome) -> dict[str, Any]:
    ad: dict[str, Any] = {
        "TransferSuccess": outcome.succeeded,
        "TransferProtocol": outcome.method or outcome.request.url.partition(":")[0],
        "TransferType": "upload" if outcome.upload else "download",
        "TransferUrl": outcome.request.url,
        "TransferFileName": outcome.request.local_file,
        "TransferFileBytes": outcome.moved_bytes,
        "TransferTotalBytes": outcome.total_bytes,
        "TransferStartTime": int(outcome.started),
        "TransferEndTime": int(outcome.ended),
        "ConnectionTimeSeconds": round(max(0.0, outcome.connect_seconds), 3),
        "TransferHostName": outcome.host,
        "TransferLocalMachineName": outcome.local_machine,
    }
    developer: dict[str, Any] = {"Attempts": outcome.attempts, "PluginVersion": PLUGIN_VERSION}
    for number, reason in enumerate(outcome.errors, 1):
        developer[f"TransferError{number}"] = reason
    ad["DeveloperData"] = developer
    failure = outcome.failure
    if failure is not None:
        ad["TransferError"] = failure.message
        error: dict[str, Any] = {
            "ErrorType": str(failure.kind),
            "ErrorString": failure.message,
            "PluginVersion": PLUGIN_VERSION,
            "PluginLaunched": True,
            "ShouldRefresh": failure.refresh,
        }
        if failure.server:
            error["FailedServer"] = failure.server
        ad["TransferErrorData"] = [error]
        ad["TransferRetryable"] = failure.retryable
    return ad


def exit_status(outcomes: Sequence[Outcome]) -> Exit:
    failures = [o.failure for o in outcomes if o.failure is not None]
    if not failures:
        return Exit.SUCCESS
    if all(f.refresh for f in failures):
        return Exit.REFRESH
    return Exit.FAILURE
