"""HTCondor's plugin protocol: command lines, request ads, result ads, exit codes."""

from __future__ import annotations

import classad2
import pytest

from ospool_ep.transfer import protocol
from ospool_ep.transfer.protocol import (
    Batch,
    Capabilities,
    ErrorType,
    Exit,
    Failure,
    Outcome,
    Request,
    SelfTest,
    Single,
    UsageError,
)


def test_the_command_lines_htcondor_and_osgs_self_test_use_are_understood() -> None:
    assert protocol.parse_arguments(["-classad"]) == Capabilities()
    assert protocol.parse_arguments(["-infile", "i", "-outfile", "o"]) == Batch("i", "o")
    assert protocol.parse_arguments(["-outfile", "o", "-upload", "-infile", "i"]) == Batch(
        "i", "o", upload=True
    )
    assert protocol.parse_arguments(["-d", "osdf:///a", "dest"]) == Single(
        "osdf:///a", "dest", True
    )
    assert protocol.parse_arguments(["-selftest", "-timeout", "9"]) == SelfTest(None, 9.0)


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["-infile", "i"],
        ["-infile"],
        ["-infile", "i", "-outfile", "o", "extra"],
        ["-upload", "osdf:///a", "dest"],
        ["-frobnicate"],
        ["-selftest", "-timeout", "soon"],
        ["-selftest", "-timeout", "0"],
        ["-selftest", "a", "b"],
    ],
)
def test_a_command_line_htcondor_never_writes_is_a_usage_error(argv: list[str]) -> None:
    with pytest.raises(UsageError):
        protocol.parse_arguments(argv)


def test_the_capabilities_ad_offers_the_three_methods_as_a_multi_file_plugin() -> None:
    ad = classad2.ClassAd(protocol.capabilities())
    assert ad["SupportedMethods"] == "osdf,pelican,stash"
    assert ad["MultipleFileSupport"] is True
    assert ad["PluginType"] == "FileTransfer"


def test_requests_come_from_the_ads_with_url_and_local_file_name_in_order() -> None:
    text = (
        '[ Url = "osdf:///a"; LocalFileName = "/s/a" ]\n'
        "[ Other = 1 ]\n"
        '[ url = "osdf:///b"; localfilename = "/s/b" ]\n'
    )
    ads = [dict(ad) for ad in classad2.parseAds(text)]
    assert protocol.requests_from_ads(ads) == [
        Request("osdf:///a", "/s/a"),
        Request("osdf:///b", "/s/b"),
    ]


@pytest.mark.parametrize(
    "ads",
    [[], [{"Other": 1}], [{"Url": "osdf:///a"}], [{"Url": 3, "LocalFileName": "/x"}]],
)
def test_a_request_file_without_a_whole_request_is_refused(ads: list[dict[str, object]]) -> None:
    with pytest.raises(UsageError):
        protocol.requests_from_ads(ads)


def outcome(failure: Failure | None = None, **kw: object) -> Outcome:
    base: dict[str, object] = {
        "request": Request("osdf:///a/b", "/s/b"),
        "upload": False,
        "started": 100.0,
        "ended": 102.5,
        "method": "osdf",
        "total_bytes": 10,
        "moved_bytes": 10,
        "host": "cache:8443",
        "failure": failure,
    }
    base.update(kw)
    return Outcome(**base)  # type: ignore[arg-type]


def test_a_success_is_reported_with_its_bytes_times_and_server() -> None:
    ad = classad2.ClassAd(protocol.result_ad(outcome()))
    assert ad["TransferSuccess"] is True
    assert (ad["TransferFileBytes"], ad["TransferTotalBytes"]) == (10, 10)
    assert (ad["TransferStartTime"], ad["TransferEndTime"]) == (100, 102)
    assert ad["TransferType"] == "download"
    assert ad["TransferHostName"] == "cache:8443"
    assert "TransferError" not in ad


def test_a_failure_carries_its_reason_and_htcondors_error_data() -> None:
    failure = Failure(ErrorType.CONTACT, "cache stalled", retryable=True, server="cache:8443")
    ad = classad2.ClassAd(
        protocol.result_ad(outcome(failure, attempts=3, errors=("one", "two", "cache stalled")))
    )
    assert ad["TransferSuccess"] is False
    assert ad["TransferError"] == "cache stalled"
    (error,) = ad["TransferErrorData"]
    assert error["ErrorType"] == "Contact"
    assert error["FailedServer"] == "cache:8443"
    assert ad["DeveloperData"]["Attempts"] == 3
    assert ad["DeveloperData"]["TransferError3"] == "cache stalled"


def test_the_exit_status_says_all_done_some_failed_or_refresh_the_credentials() -> None:
    refused = Failure(ErrorType.AUTHORIZATION, "refused", refresh=True)
    other = Failure(ErrorType.TRANSFER, "broken")
    assert protocol.exit_status([outcome(), outcome()]) is Exit.SUCCESS
    assert protocol.exit_status([outcome(), outcome(other)]) is Exit.FAILURE
    assert protocol.exit_status([outcome(), outcome(refused)]) is Exit.REFRESH
    assert protocol.exit_status([outcome(refused), outcome(other)]) is Exit.FAILURE
