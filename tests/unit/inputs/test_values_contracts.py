"""What each value parser tells a site, pinned by value (SPEC 4.1, 5.2).

The settings loader prints ``VARIABLE: <message>`` and ``fix: <fix>`` from the
:class:`~ospool_ep.values.Invalid` a parser raises, so each distinct message
and fix is pinned exactly once here, by calling the parser directly; the limits
they state (ports, host name length, zone length, message cut) at their
boundaries; and the accepted forms a site writes, with the value returned.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import PurePosixPath

import pytest

from ospool_ep.inputs import values as ev
from ospool_ep.inputs.classad import parse_expression

KNOWN_POOLS = ("ospool", "itb-ospool")
INTERFACE_FIX = (
    "write the interface name as it is, e.g. [fe80::1%eth0] "
    "(letters, digits, '.', '_', '-', at most 15 characters; no %25 escape)"
)
EXPRESSION_FIX = (
    'give one ClassAd boolean expression on one line, e.g. TARGET.ProjectName == "MyProject"'
)
URL_FIX = "write http://host[:port]/path or https://..."
JOB_ENV_FIX = (
    "write NAME=VALUE entries separated by blanks, in HTCondor's environment syntax: "
    "quote a value with blanks in single quotes (NAME='a b'), write '' for a quote "
    'inside them and "" for a double quote'
)
JOB_ENV_CONFIG_FIX = (
    "write the value without '$' or backslashes: the jobs' environment is part of "
    "HTCondor's configuration, where '$(...)' expands a macro and '\\' continues a line"
)
POOL_FIX = "use one of ospool, itb-ospool, or a central manager's host[:port]"
DISTRIBUTION_FIX = (
    "write weighted images separated by blanks, e.g. 10%__htc/rocky:8 90%__htc/rocky:9"
)
DISTRIBUTION_PLACE = (
    "give the image's path relative to /cvmfs/singularity.opensciencegrid.org/, e.g. htc/rocky:9"
)
MACRO = "contains '$', which HTCondor would expand as a macro"

# (id, the parser on a bad value, message, fix)
REFUSALS: list[tuple[str, Callable[[], object], str, str]] = [
    (
        "bool",
        lambda: ev.parse_bool("maybe"),
        "'maybe' is not a boolean",
        "use true or false (or yes/no, y/n, t/f, on/off, 1/0)",
    ),
    (
        "int-form",
        lambda: ev.parse_int("1.5", minimum=0),
        "'1.5' is not a whole number",
        "use an integer",
    ),
    (
        "int-form-unit",
        lambda: ev.parse_int("x", minimum=0, unit="hours"),
        "'x' is not a whole number",
        "use an integer hours",
    ),
    (
        "int-minimum",
        lambda: ev.parse_int("0", minimum=1),
        "0 is out of range",
        "use an integer >= 1",
    ),
    (
        "int-maximum",
        lambda: ev.parse_int("65536", minimum=1, maximum=65535, unit="(a port)"),
        "65536 is out of range",
        "use an integer between 1 and 65535 (a port)",
    ),
    (
        "number-form",
        lambda: ev.parse_number("1e3", minimum=0, unit="GB"),
        "'1e3' is not a number",
        "use a number >= 0 GB",
    ),
    (
        "number-form-no-unit",
        lambda: ev.parse_number("x", minimum=0.5),
        "'x' is not a number",
        "use a number >= 0.5",
    ),
    (
        "number-minimum",
        lambda: ev.parse_number("0.25", minimum=0.5, unit="GB"),
        "0.25 is below 0.5",
        "use a number >= 0.5 GB",
    ),
    (
        "name-empty",
        lambda: ev.parse_ad_string("  "),
        "is empty",
        "set it to the name registered in OSG Topology",
    ),
    (
        "name-long",
        lambda: ev.parse_ad_string("x" * 129),
        "is 129 characters long",
        "use at most 128 characters",
    ),
    (
        "name-quote",
        lambda: ev.parse_ad_string("My'Site"),
        "contains a quote",
        "remove the quotes; the value is quoted for you",
    ),
    (
        "name-macro",
        lambda: ev.parse_ad_string("Site$(X)"),
        MACRO,
        "use the plain name as registered in OSG Topology",
    ),
    (
        "name-invisible",
        lambda: ev.parse_ad_string("Site\u200bX"),
        "contains non-printable characters",
        "use printable characters only",
    ),
    (
        "expression",
        lambda: parse_expression("1 +"),
        "'1 +' is not a valid ClassAd expression",
        EXPRESSION_FIX,
    ),
    (
        "expression-constant",
        lambda: parse_expression(" 5 "),
        "'5' is a constant int, not a boolean",
        EXPRESSION_FIX,
    ),
    (
        "project",
        lambda: ev.parse_project_name("My Project"),
        "'My Project' is not a project name",
        "use letters, digits, '.', '_' and '-' only, as in the OSPool project list",
    ),
    (
        "zone",
        lambda: ev.parse_host("[fe80::1%eth 0]"),
        "'[fe80::1%eth 0]' has an invalid zone (interface) after '%'",
        INTERFACE_FIX,
    ),
    (
        "zone-uri-escape",
        lambda: ev.parse_host("[fe80::1%25eth0]"),
        "'[fe80::1%25eth0]' has an invalid zone (interface) after '%'",
        INTERFACE_FIX,
    ),
    (
        "ipv6",
        lambda: ev.parse_host("[fe80::g]"),
        "'[fe80::g]' is not an IPv6 address",
        "write [addr]",
    ),
    (
        "host",
        lambda: ev.parse_host("cm_1.example.org"),
        "'cm_1.example.org' is not a valid host name",
        "use a DNS name or an IP address",
    ),
    (
        "host-half-bracket",
        lambda: ev.parse_host("[::1"),
        "'[::1' is not a valid host name",
        "use a DNS name or an IP address",
    ),
    (
        "host-port",
        lambda: ev.parse_host_port("a:b:c"),
        "'a:b:c' is not host[:port]",
        "write host or host:port",
    ),
    (
        "port-zero",
        lambda: ev.parse_host_port("cm.example.org:0"),
        "port 0 is out of range",
        "use a port between 1 and 65535",
    ),
    (
        "port-above",
        lambda: ev.parse_host_port("cm.example.org:65536"),
        "port 65536 is out of range",
        "use a port between 1 and 65535",
    ),
    (
        "collectors",
        lambda: ev.parse_collector_list(" , "),
        "names no host",
        "write host[:port], several separated by commas",
    ),
    (
        "pool-near-miss",
        lambda: ev.parse_pool("itb-ospol", known=KNOWN_POOLS),
        "'itb-ospol' is not a known pool; did you mean itb-ospool?",
        "write POOL=itb-ospool, or host:port if 'itb-ospol' is a central manager",
    ),
    (
        "pool-no-host",
        lambda: ev.parse_pool("no such pool", known=KNOWN_POOLS),
        "'no such pool' is neither a known pool nor a central manager's host[:port] "
        "('no such pool' is not a valid host name)",
        POOL_FIX,
    ),
    (
        "pool-bad-port",
        lambda: ev.parse_pool("cm:0", known=KNOWN_POOLS),
        "'cm:0' is neither a known pool nor a central manager's host[:port] "
        "(port 0 is out of range)",
        POOL_FIX,
    ),
    (
        "proxy-credentials",
        lambda: ev.parse_proxy_url("user@squid:3128"),
        "contains credentials (user@)",
        "give the proxy as host:port; jobs use it unauthenticated",
    ),
    (
        "proxy-scheme",
        lambda: ev.parse_proxy_url("HTTPS://squid:3128"),
        "scheme 'HTTPS' is not supported",
        "use http://host:port",
    ),
    (
        "url-macro",
        lambda: ev.parse_http_url("http://h/$(X)", for_config=True),
        f"is not a plain URL: {MACRO}",
        URL_FIX + " without quotes",
    ),
    (
        "url-space",
        lambda: ev.parse_http_url("http://h/a b"),
        "is not a plain URL: contains spaces or quotes",
        URL_FIX + " without quotes",
    ),
    (
        "url-quote",
        lambda: ev.parse_http_url("http://h/'a'"),
        "is not a plain URL: contains spaces or quotes",
        URL_FIX + " without quotes",
    ),
    ("url-scheme", lambda: ev.parse_http_url("ftp://h/x"), "is not an http(s) URL", URL_FIX),
    ("url-port", lambda: ev.parse_http_url("http://h:99999/x"), "is not an http(s) URL", URL_FIX),
    (
        "repos-none",
        lambda: ev.parse_repos(' "" '),
        "names no repository",
        "list repos like oasis.opensciencegrid.org",
    ),
    (
        "repo",
        lambda: ev.parse_repos("oasis"),
        "'oasis' is not a CVMFS repository name",
        "use fully qualified names like singularity.opensciencegrid.org",
    ),
    (
        "cvmfs-proxy",
        lambda: ev.parse_cvmfs_proxy("http://squid:3128 DIRECT"),
        "'http://squid:3128 DIRECT' is not a CVMFS proxy list",
        "use cvmfs syntax, e.g. http://squid:3128;DIRECT (no spaces or quotes)",
    ),
    (
        "quota-zero",
        lambda: ev.parse_cvmfs_quota("0"),
        "0 is not a quota",
        "use a size in MB, or -1 for no limit",
    ),
    (
        "quota-form",
        lambda: ev.parse_cvmfs_quota("lots"),
        "'lots' is not a whole number",
        "use an integer MB (-1 for no limit)",
    ),
    (
        "walltime",
        lambda: ev.parse_walltime("2 days"),
        "'2 days' is not a walltime",
        "use seconds (> 0) or [[D-]HH:]MM:SS, e.g. 1-12:00:00",
    ),
    (
        "path-backslash",
        lambda: ev.parse_abs_path("/a\\b"),
        "'/a\\\\b' contains a backslash",
        "use a plain absolute path",
    ),
    (
        "path-space",
        lambda: ev.parse_abs_path("/my data"),
        "'/my data' contains spaces or quotes",
        "use a plain absolute path",
    ),
    (
        "path-quote",
        lambda: ev.parse_abs_path('/my"data'),
        "'/my\"data' contains spaces or quotes",
        "use a plain absolute path",
    ),
    (
        "path-relative",
        lambda: ev.parse_abs_path("data"),
        "'data' is not an absolute path",
        "use a path starting with /",
    ),
    (
        "bind",
        lambda: ev.parse_bind_list("/a:/b:rx"),
        "'/a:/b:rx' is not src[:dst[:ro|rw]]",
        "e.g. /data:/data:ro",
    ),
    (
        "bind-relative",
        lambda: ev.parse_bind_list("/a:b"),
        "'b' is not an absolute path",
        "use a path starting with /",
    ),
    (
        "job-env-form",
        lambda: ev.parse_job_env("FOO"),
        "'FOO' is not NAME=VALUE",
        JOB_ENV_FIX,
    ),
    (
        "job-env-condor",
        lambda: ev.parse_job_env("_condor_START=True"),
        "_condor_START may not be set for jobs",
        "remove it from EXTRA_JOB_ENV",
    ),
    (
        "job-env-token",
        lambda: ev.parse_job_env("TOKEN=x"),
        "TOKEN may not be set for jobs",
        "remove it from EXTRA_JOB_ENV",
    ),
    (
        "job-env-macro",
        lambda: ev.parse_job_env("A=$(HOME)"),
        f"the value of A {MACRO}",
        JOB_ENV_CONFIG_FIX,
    ),
    (
        "job-env-backslash",
        lambda: ev.parse_job_env("A='x\\y'"),
        "the value of A contains a backslash",
        JOB_ENV_CONFIG_FIX,
    ),
    (
        "job-env-lone-double-quote",
        lambda: ev.parse_job_env('A="x"'),
        "has a lone double quote",
        JOB_ENV_FIX,
    ),
    (
        "job-env-open-single-quote",
        lambda: ev.parse_job_env("A='x y"),
        "has a single quote that is not closed",
        JOB_ENV_FIX,
    ),
    (
        "proxy-setting-blank",
        lambda: ev.parse_proxy_setting("http://proxy:3128 # corp"),
        "is not a plain proxy address: contains spaces or quotes",
        "write http://host:port (or host:port) without quotes",
    ),
    (
        "proxy-setting-not-url",
        lambda: ev.parse_proxy_setting("http://pr\u00f6xy:3128"),
        "is not a plain proxy address: has characters no URL has",
        "write http://host:port (or host:port) without quotes",
    ),
    (
        "mirror-path",
        lambda: ev.parse_registry_mirror("mirror.example.org/a b"),
        "'mirror.example.org/a b' is not a registry location",
        "write host[:port][/namespace], e.g. mirror.example.org/dockerhub",
    ),
    (
        "distribution-form",
        lambda: ev.parse_image_distribution("htc/rocky:9"),
        "'htc/rocky:9' is not PERCENT%__IMAGE",
        DISTRIBUTION_FIX,
    ),
    (
        "distribution-no-image",
        lambda: ev.parse_image_distribution("100%__"),
        "'100%__' is not PERCENT%__IMAGE",
        DISTRIBUTION_FIX,
    ),
    (
        "distribution-weight-word",
        lambda: ev.parse_image_distribution("ten%__htc/rocky:9"),
        "'ten%__htc/rocky:9' is not PERCENT%__IMAGE",
        DISTRIBUTION_FIX,
    ),
    (
        "distribution-single-underscore",
        lambda: ev.parse_image_distribution("100%_htc/rocky:9"),
        "'100%_htc/rocky:9' is not PERCENT%__IMAGE",
        DISTRIBUTION_FIX,
    ),
    (
        "distribution-weight-zero",
        lambda: ev.parse_image_distribution("0%__htc/rocky:9"),
        "'0%__htc/rocky:9' has the weight 0",
        "use a weight from 1 to 100",
    ),
    (
        "distribution-weight-over-100",
        lambda: ev.parse_image_distribution("101%__htc/rocky:9"),
        "'101%__htc/rocky:9' has the weight 101",
        "use a weight from 1 to 100",
    ),
    (
        "distribution-parent",
        lambda: ev.parse_image_distribution("100%__../etc"),
        "'100%__../etc' names an image outside /cvmfs/singularity.opensciencegrid.org/",
        DISTRIBUTION_PLACE,
    ),
    (
        "distribution-absolute",
        lambda: ev.parse_image_distribution("100%__/etc/condor"),
        "'100%__/etc/condor' names an image outside /cvmfs/singularity.opensciencegrid.org/",
        DISTRIBUTION_PLACE,
    ),
    (
        "distribution-characters",
        lambda: ev.parse_image_distribution("100%__htc/rocky:9$(X)"),
        "'100%__htc/rocky:9$(X)' names an image with characters no image path has",
        "use letters, digits and . _ : / @ + - only, e.g. htc/rocky:9",
    ),
    (
        "distribution-empty",
        lambda: ev.parse_image_distribution(" "),
        "names no image",
        "write weighted images, e.g. 10%__htc/rocky:8 90%__htc/rocky:9",
    ),
    # -- shapes of the launcher's own keys (same module: one rule per shape) --
    (
        "choice",
        lambda: ev.parse_choice("XML", ("text", "json"), "a log format"),
        "'XML' is not a log format",
        "use text or json",
    ),
    (
        "choice-exact-case",
        lambda: ev.parse_choice("Docker", ("docker", "podman"), "an engine", fold_case=False),
        "'Docker' is not an engine",
        "use docker or podman",
    ),
    (
        "expression-text-empty",
        lambda: ev.parse_expression_text("  "),
        "'' is empty",
        EXPRESSION_FIX,
    ),
    (
        "expression-text-macro",
        lambda: ev.parse_expression_text("$(START)"),
        f"'$(START)' {MACRO}",
        EXPRESSION_FIX,
    ),
    (
        "mount-source-colon",
        lambda: ev.parse_mount_source("/srv/a:b"),
        "'/srv/a:b' contains ':' or ','",
        "use a path without ':' or ','",
    ),
    (
        "mount-source-comma",
        lambda: ev.parse_mount_source("/srv/a,b"),
        "'/srv/a,b' contains ':' or ','",
        "use a path without ':' or ','",
    ),
    (
        "mount-source-relative",
        lambda: ev.parse_mount_source("srv"),
        "'srv' is not an absolute path",
        "use a path starting with /",
    ),
    (
        "knob-control",
        lambda: ev.parse_condor_knob_value("a\tb"),
        "contains a control character",
        "write the value on one line",
    ),
    (
        "image",
        lambda: ev.parse_image("-v /:/host"),
        "'-v /:/host' is not an image reference",
        "write [registry/]name[:tag][@digest], e.g. hub.example.org/osg/ospool-ep:1.0",
    ),
    (
        "container-name",
        lambda: ev.parse_container_name("_pilot"),
        "'_pilot' is not a container name",
        "use letters, digits, '_', '.' and '-', starting with a letter or digit",
    ),
    (
        "container-name-long",
        lambda: ev.parse_container_name("p" * 129),
        f"{ev.shown('p' * 129)} is not a container name",
        "use letters, digits, '_', '.' and '-', starting with a letter or digit",
    ),
    (
        "apparmor",
        lambda: ev.parse_apparmor_profile("docker ep"),
        "'docker ep' is not an AppArmor profile name",
        "e.g. docker-ep",
    ),
    (
        "bind-four-parts",
        lambda: ev.parse_bind_list("/data:/data:ro:x"),
        "'/data:/data:ro:x' is not src[:dst[:ro|rw]]",
        "e.g. /data:/data:ro",
    ),
    (
        "quota-below-minus-one",
        lambda: ev.parse_cvmfs_quota("-2"),
        "-2 is out of range",
        "use an integer >= -1 MB (-1 for no limit)",
    ),
]


@pytest.mark.parametrize(
    ("parse", "message", "fix"), [r[1:] for r in REFUSALS], ids=[r[0] for r in REFUSALS]
)
def test_each_refusal_names_what_is_wrong_and_how_to_fix_it(
    parse: Callable[[], object], message: str, fix: str
) -> None:
    with pytest.raises(ev.Invalid) as raised:
        parse()
    assert (raised.value.message, raised.value.fix) == (message, fix)
    assert str(raised.value) == message


def test_a_size_refusal_of_an_expression_offers_to_simplify_it() -> None:
    with pytest.raises(ev.Invalid) as raised:
        parse_expression("(" * 140 + "True" + ")" * 140)
    assert raised.value.message.endswith(
        "is nested too deeply for HTCondor's ClassAd parser "
        "(it must leave 32 levels of parentheses to spare)"
    )
    assert raised.value.fix.startswith("simplify the expression")


LONGEST_HOST = ".".join(["a" * 63] * 3 + ["a" * 61])

# (id, the parser on a good value, what it returns)
ACCEPTED: list[tuple[str, Callable[[], object], object]] = [
    ("int-at-maximum", lambda: ev.parse_int(" 65535 ", minimum=1, maximum=65535), 65535),
    ("int-signed", lambda: ev.parse_int("+3", minimum=-1), 3),
    ("number", lambda: ev.parse_number("0.5", minimum=0.5), 0.5),
    ("name-128", lambda: ev.parse_ad_string(" " + "x" * 128 + " "), "x" * 128),
    ("expression", lambda: parse_expression(" Memory > 1 "), "Memory > 1"),
    ("fqdn-trailing-dot", lambda: ev.parse_host("cm.example.org."), "cm.example.org."),
    ("host-capitals", lambda: ev.parse_host("Node-X"), "Node-X"),
    ("host-253", lambda: ev.parse_host(LONGEST_HOST), LONGEST_HOST),
    ("ipv4", lambda: ev.parse_host("192.0.2.1"), "192.0.2.1"),
    ("zone-15", lambda: ev.parse_host("[fe80::1%" + "e" * 15 + "]"), "[fe80::1%" + "e" * 15 + "]"),
    ("zone-named-25", lambda: ev.parse_host("[fe80::1%25]"), "[fe80::1%25]"),
    ("ipv6-short", lambda: ev.parse_host("[1::]"), "[1::]"),
    ("port-1", lambda: ev.parse_host_port("h:1"), ("h", 1)),
    ("port-65535", lambda: ev.parse_host_port("[::1]:65535"), ("[::1]", 65535)),
    (
        "collectors",
        lambda: ev.parse_collector_list(" a.org:9618, b.org  c.org"),
        "a.org:9618,b.org,c.org",
    ),
    ("pool-known", lambda: ev.parse_pool(" ITB-OSPool ", known=KNOWN_POOLS), "itb-ospool"),
    (
        "pool-host",
        lambda: ev.parse_pool("cm.example.org:9618", known=KNOWN_POOLS),
        "cm.example.org:9618",
    ),
    (
        "proxy-bare",
        lambda: ev.parse_proxy_url("squid.example.edu:3128"),
        "http://squid.example.edu:3128",
    ),
    (
        "proxy-url",
        lambda: ev.parse_proxy_url("HTTP://squid.example.edu:3128/"),
        "http://squid.example.edu:3128",
    ),
    (
        "url-dollar-not-for-config",
        lambda: ev.parse_http_url("https://h.org/x?a=$b"),
        "https://h.org/x?a=$b",
    ),
    (
        "mirror-host",
        lambda: ev.parse_registry_mirror("mirror.example.org:5000"),
        "mirror.example.org:5000",
    ),
    (
        "repos",
        lambda: ev.parse_repos(
            "\"oasis.opensciencegrid.org\", 'cms.cern.ch' oasis.opensciencegrid.org"
        ),
        ("oasis.opensciencegrid.org", "cms.cern.ch"),
    ),
    (
        "cvmfs-proxy",
        lambda: ev.parse_cvmfs_proxy("http://a:3128|http://b:3128;DIRECT"),
        "http://a:3128|http://b:3128;DIRECT",
    ),
    ("quota-unlimited", lambda: ev.parse_cvmfs_quota("-1"), -1),
    ("path", lambda: ev.parse_abs_path(" /Xdata "), PurePosixPath("/Xdata")),
    ("bind", lambda: ev.parse_bind_list("/a, /b:/c:ro,"), ("/a", "/b:/c:ro")),
    ("job-env", lambda: ev.parse_job_env("MODE=XL  N=4"), (("MODE", "XL"), ("N", "4"))),
    ("bool-on", lambda: ev.parse_bool(" On "), True),
    ("bool-f", lambda: ev.parse_bool("f"), False),
    ("bool-y", lambda: ev.parse_bool("Y"), True),
    ("bool-off", lambda: ev.parse_bool("OFF"), False),
    ("pool-single-label", lambda: ev.parse_pool(" cm ", known=KNOWN_POOLS), "cm"),
    ("pool-single-label-port", lambda: ev.parse_pool("cm:9618", known=KNOWN_POOLS), "cm:9618"),
    ("pool-not-that-near", lambda: ev.parse_pool("ospool-cm", known=KNOWN_POOLS), "ospool-cm"),
    (
        "pool-near-miss-with-port",
        lambda: ev.parse_pool("ospol:9618", known=KNOWN_POOLS),
        "ospol:9618",
    ),
    (
        "proxy-no-port",
        lambda: ev.parse_proxy_url("squid.example.edu"),
        "http://squid.example.edu:3128",
    ),
    ("proxy-url-no-port", lambda: ev.parse_proxy_url("http://squid/"), "http://squid:3128"),
    ("bind-blanks", lambda: ev.parse_bind_list(" /a:/a:ro  /b,/c "), ("/a:/a:ro", "/b", "/c")),
    (
        "job-env-quoted-syntax",
        lambda: ev.parse_job_env("one=1 two=\"\"2\"\" three='spacey ''quoted'' value'"),
        (("one", "1"), ("two", '"2"'), ("three", "spacey 'quoted' value")),
    ),
    (
        "job-env-outer-double-quotes",
        lambda: ev.parse_job_env(" \"A=1 B='x y'\" "),
        (("A", "1"), ("B", "x y")),
    ),
    ("job-env-empty-quoted", lambda: ev.parse_job_env("A='' B=x"), (("A", ""), ("B", "x"))),
    ("job-env-semicolon", lambda: ev.parse_job_env("A=x;y"), (("A", "x;y"),)),
    (
        "mirror-namespace",
        lambda: ev.parse_registry_mirror("mirror.example.org:5000/dockerhub/"),
        "mirror.example.org:5000/dockerhub/",
    ),
    (
        "proxy-setting",
        lambda: ev.parse_proxy_setting(" http://u:p%40ss@proxy.example.org:3128/ "),
        "http://u:p%40ss@proxy.example.org:3128/",
    ),
    ("host-name", lambda: ev.parse_host_name(" syslog.example.org "), "syslog.example.org"),
    (
        "distribution",
        lambda: ev.parse_image_distribution(" 10%__htc/rocky:8\t90%__htc/rocky:9 "),
        ((10, "htc/rocky:8"), (90, "htc/rocky:9")),
    ),
    ("distribution-under-100", lambda: ev.parse_image_distribution("5%__a"), ((5, "a"),)),
    ("choice-folded", lambda: ev.parse_choice(" JSON ", ("text", "json"), "a log format"), "json"),
    ("expression-text", lambda: ev.parse_expression_text(" a && b "), "a && b"),
    ("mount-source", lambda: ev.parse_mount_source(" /srv/ospool "), PurePosixPath("/srv/ospool")),
    ("knob-value", lambda: ev.parse_condor_knob_value("$(A) B"), "$(A) B"),
    (
        "image",
        lambda: ev.parse_image("hub.example.org/osg/ep:1.0@sha256:ab"),
        "hub.example.org/osg/ep:1.0@sha256:ab",
    ),
    ("container-name", lambda: ev.parse_container_name("p" * 128), "p" * 128),
    ("apparmor", lambda: ev.parse_apparmor_profile("docker-ep"), "docker-ep"),
    # A near miss of a pool name with a dot or a port is a host, not a typo.
    (
        "pool-near-miss-with-dot",
        lambda: ev.parse_pool("itb-ospool.", known=KNOWN_POOLS),
        "itb-ospool.",
    ),
    (
        "pool-near-miss-with-port",
        lambda: ev.parse_pool("ospol:9618", known=KNOWN_POOLS),
        "ospol:9618",
    ),
]


@pytest.mark.parametrize(
    ("parse", "expected"), [r[1:] for r in ACCEPTED], ids=[r[0] for r in ACCEPTED]
)
def test_each_good_form_is_returned_normalized(
    parse: Callable[[], object], expected: object
) -> None:
    assert parse() == expected


@pytest.mark.parametrize(
    "host",
    [LONGEST_HOST + "a", "[fe80::1%" + "e" * 16 + "]", "[fe80::1%25e]", "a-", "-a", "a..b", ""],
    ids=[
        "254-chars",
        "zone-16",
        "zone-uri-escape-of-one-char",
        "dash-end",
        "dash-start",
        "empty-label",
        "empty",
    ],
)
def test_host_names_past_the_limits_are_refused(host: str) -> None:
    with pytest.raises(ev.Invalid):
        ev.parse_host(host)


def test_messages_show_a_value_of_60_characters_whole_and_cut_a_longer_one() -> None:
    assert ev.shown("x" * 60) == repr("x" * 60)
    assert ev.shown("x" * 61) == repr("x" * 60 + "...")
    assert ev.shown("a\tb") == "'a\\tb'"


def test_credentials_are_hidden_in_every_proxy_of_a_list() -> None:
    shown = ev.redact_credentials("http://user:pw@squid:3128;http://u@b:1|DIRECT")
    assert shown == "http://***@squid:3128;http://***@b:1|DIRECT"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("http://hooks.example.org/", "http://hooks.example.org"),
        ("http://hooks.example.org/X", "http://hooks.example.org/..."),
        ("https://hooks.example.org:8443?key=1", "https://hooks.example.org:8443/..."),
    ],
)
def test_a_url_is_shown_as_scheme_host_and_port_hiding_any_path(url: str, shown: str) -> None:
    assert ev.redact_url(url) == shown
