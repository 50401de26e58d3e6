"""Transfer URLs: what the plugin accepts, and a clear reason for what it refuses."""

from __future__ import annotations

import re

import pytest

from ospool_ep.transfer.urls import BadUrl, parse


def test_osdf_and_stash_urls_name_objects_in_the_osdf() -> None:
    for url in ("osdf:///ospool/ap20/data/x.dat", "stash:///ospool/ap20/data/x.dat"):
        obj = parse(url)
        assert obj.federation == "pelican://osg-htc.org/"
        assert obj.path == "/ospool/ap20/data/x.dat"
        assert obj.federation_host == "osg-htc.org"


def test_a_host_after_osdf_is_the_first_part_of_the_path_as_the_pelican_clients_read_it() -> None:
    assert parse("osdf://ospool/ap20/x").path == "/ospool/ap20/x"


def test_a_pelican_url_names_its_federation_by_host_and_port() -> None:
    obj = parse("pelican://Fed.Example.org:8444/test/a//b/")
    assert obj.federation == "pelican://fed.example.org:8444/"
    assert obj.path == "/test/a/b/"
    assert obj.method == "pelican"


def test_a_federation_at_an_ipv6_address_is_written_in_brackets() -> None:
    obj = parse("pelican://[::1]:8443/test/x")
    assert (obj.federation, obj.federation_host) == ("pelican://[::1]:8443/", "[::1]:8443")
    assert parse("pelican://[2001:DB8::7]/x").federation == "pelican://[2001:db8::7]/"


@pytest.mark.parametrize(
    "url",
    [
        "pelican://[::1]x/x",
        "pelican://[fed.org]/x",
        "pelican://[127.0.0.1]/x",
        "pelican://[::1/x",
        "osdf://[::1/x",
    ],
)
def test_a_bad_bracketed_host_is_refused_saying_it_is_not_an_ip_address(url: str) -> None:
    """Python's urlsplit refuses some of these itself, in words that differ between
    versions (3.11.2 and 3.11.7 here, 3.13 in the image): whichever refuses, it is a BadUrl
    that says what an address in brackets must be."""
    with pytest.raises(BadUrl) as raised:
        parse(url)
    assert re.search(r"IPv[46]", str(raised.value)), raised.value


def test_a_credential_name_before_the_method_is_the_jobs_token_to_use() -> None:
    obj = parse("ligo.prod+osdf:///igwn/frames/x.gwf")
    assert (obj.method, obj.token_name) == ("osdf", "ligo.prod")
    assert parse("osdf:///a/b").token_name is None


def test_directread_is_the_one_option_honoured() -> None:
    assert parse("osdf:///a/b?directread").direct_read
    assert not parse("osdf:///a/b").direct_read


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("", "empty"),
        ("osdf:///a b", "space or a control character"),
        ("osdf:///a\nb", "space or a control character"),
        ("/ospool/x", "not a URL"),
        ("https://cache.example.org/x", "scheme 'https' is not one of osdf, pelican, stash"),
        ("bad name+osdf:///x", "space or a control character"),
        ("a/b+osdf:///x", "credential name 'a/b'"),
        ("osdf:///", "names no object"),
        ("osdf://", "names no object"),
        ("osdf:///a/../../etc/passwd", "'..' are not allowed"),
        ("osdf:///a/./b", "'..' are not allowed"),
        ("pelican:///test/x", "needs the federation's host"),
        ("pelican://user:pw@fed.org/x", "credentials in the URL"),
        ("pelican://fed.org:99999/x", "port '99999'"),
        ("pelican://fed.org:http/x", "port 'http'"),
        ("pelican://-bad-/x", "not a host name"),
        ("pelican://fed.org:8443:1/x", "not a host name"),
        ("pelican://::1:8443/x", "not a host name"),
        ("pelican://[::1]:0/x", "port '0'"),
        ("osdf:///a/b?pack=auto", "option pack is not supported"),
        ("osdf:///a/b?recursive", "option recursive is not supported"),
        ("osdf:///a/b#frag", "fragment"),
        ("osdf:///" + "a" * 9000, "longer than 8192"),
    ],
)
def test_a_bad_url_is_refused_with_the_reason(url: str, reason: str) -> None:
    with pytest.raises(BadUrl, match=None) as raised:
        parse(url)
    assert reason in str(raised.value)
