"""A seeded fuzzer over every input a site controls (SPEC 5, 7.4): never an internal error.

Each case starts from a valid pilot (the corpus' baseline) and replaces one thing
with a random or adversarial value: one variable of the settings table, the
extra-attributes file, or a token file. The check pipeline ``ospool-ep check``
runs (:func:`ospool_ep.plan.build_plan`, the render, HTCondor's parser on some
trees) runs in-process and must end in 0, 69 or 78 without raising, and every
report line must be printable as UTF-8 text. A few cases also run as real
processes: exit 78, no traceback.

Seeded (``random.Random(FUZZ_SEED)``) and bounded, so a failure is reproducible
by its case number.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from jwt_factory import make_jwt, payload

from ospool_ep.findings import Findings
from ospool_ep.inputs.variables import VARIABLES
from ospool_ep.pilot import plan, render

FUZZ_SEED = 20_240_609
CASES = 400
RENDER_CHECKS = 12
"""Cases whose tree also goes through HTCondor's parser (a subprocess each)."""
ALLOWED_EXITS = {0, 69, 78}

ADVERSARIAL = [
    "",
    " ",
    "\t",
    "\n",
    "0",
    "-0",
    "+0",
    "1",
    "-1",
    "00",
    "007",
    "0x10",
    "1e309",
    "-1e309",
    "1e3",
    "nan",
    "NaN",
    "inf",
    "-inf",
    "1_000",
    "\uff11",  # FULLWIDTH DIGIT ONE: str.isdigit() says yes
    "\u0661\u0662",  # ARABIC-INDIC digits
    "\u00b2",  # SUPERSCRIPT TWO
    "9" * 400,
    "18446744073709551617",
    "true",
    "TRUE",
    "yes ",
    "on",
    "$(HOSTNAME)",
    "$ENV(HOME)",
    "$RANDOM_INTEGER(1,9)",
    "$",
    "x\nSTART = True",
    "x\rSTART = True",
    "x\\",
    '"',
    "'",
    "\"'",
    "\x00",
    "\x1b[31m",
    "\u2028",
    "\u200b",
    "\ufeff",
    "\udcff",  # a lone surrogate, as os.environ decodes an undecodable byte
    "é",
    "\U0001f600",
    "a" * 70_000,
    "/" * 5000,
    "(" * 200,
    ")" * 3,
    "(" * 150 + "1" + ")" * 150,
    " && ".join(["True"] * 600),
    " || ".join(["False"] * 450),
    "!" * 1000 + "true",
    "{" * 300 + "}" * 300,
    "[a = 1; b = 2]",
    "1; b = 2",
    "[fe80::1%eth0]:9618",
    "[fe80::1%eth 0]",
    "[fe80::1%$(X)]",
    "[fe80::1%25eth0]",
    "[::1%" + "e" * 100 + "]",
    "[::1]:0",
    "[::1]:65536",
    "[]",
    "[",
    "]:",
    "host:",
    ":9618",
    "a..b",
    "-a.b",
    "http://",
    "http://[::1",
    "http://h:99999",
    "http://u:p@h/x",
    "https://h/" + "a" * 5000,
    "ftp://h",
    "/a:/b:ro:x",
    ",,,",
    "A=1 B",
    "_CONDOR_START=True",
    "1-25:00:00",
    "99999999-00:00:00",
    "0:00",
]
"""Values that have broken parsers somewhere: numbers at the edges, lookalike digits,
macro and line-break injection, huge and deeply nested text, odd IPv6 zones."""

PIECES = [
    "a",
    "Z",
    "0",
    "9",
    ".",
    ":",
    "/",
    "-",
    "_",
    ",",
    ";",
    " ",
    "=",
    "%",
    "@",
    "[",
    "]",
    "(",
    ")",
    "{",
    "}",
    '"',
    "'",
    "$",
    "$(",
    "\\",
    "\n",
    "\t",
    "&&",
    "||",
    "!",
    "==",
    "=?=",
    "MY.",
    "TARGET.",
    "True",
    "http://",
    "\u00e9",
    "\uff11",
    "\u2028",
    "\udcff",
    "\x00",
]


def random_value(rng: random.Random) -> str:
    """An adversarial value, a random splice of pieces, or one mutated."""
    roll = rng.random()
    if roll < 0.45:
        return rng.choice(ADVERSARIAL)
    text = "".join(rng.choice(PIECES) for _ in range(rng.randint(1, 12)))
    if roll < 0.6:
        base = rng.choice(ADVERSARIAL)
        cut = rng.randint(0, len(base))
        return base[:cut] + text + base[cut:]
    return text


def random_attributes(rng: random.Random) -> str:
    names = ["FOO", "GLIDEIN_Country", "START", "STARTD_ATTRS", "1x", "", "a.b", "SLOT1_X"]
    lines = []
    for _ in range(rng.randint(1, 6)):
        name = rng.choice(names) if rng.random() < 0.5 else random_value(rng)[:40]
        separator = rng.choice([" = ", "=", " == ", " ", " : ", "\t=\t"])
        lines.append(name + separator + random_value(rng))
    return rng.choice(["\n", "\r\n", "\n\n# c\n"]).join(lines)


def random_token(rng: random.Random, now: int) -> str:
    """A token file's text: garbage, a good token with one part broken, odd claims."""
    good = make_jwt(claims=payload(iat=now, exp=now + 30 * 86400))
    head, _, signature = good.split(".")
    makers: list[Callable[[], str]] = [
        lambda: random_value(rng),
        lambda: f"{head}.{random_value(rng)}.{signature}",
        lambda: make_jwt(claims=payload(iat=random_value(rng), exp=random_value(rng))),
        lambda: make_jwt(claims=payload(iat=now, exp=rng.choice([1e309, -1, 2**70, "x", None]))),
        lambda: make_jwt(claims=payload(iat=now, scope=random_value(rng))),
        lambda: "\n".join([good, random_value(rng)]),
        lambda: good[: rng.randrange(len(good))],
        lambda: good + random_value(rng),
    ]
    return rng.choice(makers)()


class Pilot:
    """The valid baseline of the corpus, in-process: files under ``root``, its environment."""

    def __init__(self, root: Path, now: int) -> None:
        self.root = root
        self.now = now
        self.token_dir = root / "tokens-orig.d"
        self.pilot_dir = root / "pilot"
        self.attributes = root / "extra-attributes.cfg"
        self.bin = root / "bin"
        for directory in (self.token_dir, self.pilot_dir, self.bin):
            directory.mkdir(parents=True)
        self.write_token(make_jwt(claims=payload(iat=now, exp=now + 30 * 86400)))
        self.env = {
            "PATH": str(self.bin),
            "GLIDEIN_Site": "Example Site",
            "GLIDEIN_ResourceName": "Example_CE",
            "TOKEN_DIR": str(self.token_dir),
            "PILOT_DIR": str(self.pilot_dir),
            "EXTRA_ATTRIBUTES_FILE": str(self.attributes),
            "MIN_DISK_GB": "0",
        }

    def write_token(self, text: str, name: str = "flock.opensciencegrid.org") -> None:
        path = self.token_dir / name
        path.write_bytes(text.encode("utf-8", "surrogateescape") + b"\n")
        path.chmod(0o600)

    def host(self, seed: int) -> plan.Host:
        missing = self.root / "absent"
        return plan.Host(
            environ=dict(self.env),
            now=self.now,
            rng=random.Random(seed),
            hostname="fuzz.example.org",
            user="fuzz",
            cvmfs_root=missing,
            cvmfsexec_distribution=missing,
            fuse_device=missing,
            opencl_vendors=missing,
            gpu_discovery=missing,
        )


def check_in_process(pilot: Pilot, seed: int, *, verify: bool) -> tuple[int, Findings]:
    """What ``ospool-ep check`` does, in this process: the exit code and the findings."""
    outcome = plan.build_plan(pilot.host(seed))
    findings = outcome.findings
    if outcome.plan is not None:
        output = pilot.root / "rendered"
        if verify:
            render.write_and_verify(
                outcome.plan, output=output, findings=findings, environ=pilot.env
            )
        else:
            render.render_files(outcome.plan, config_dir=output)
    plan.check_htcondor_installed(findings)
    for finding in findings:  # what check prints, as the terminal would get it
        finding.as_line().encode("utf-8")
        json.dumps(finding.as_dict(), ensure_ascii=False).encode("utf-8")
    return int(findings.exit_code()), findings


Mutation = Callable[[Pilot, random.Random], str]


def mutate_variable(pilot: Pilot, rng: random.Random) -> str:
    variable = rng.choice(VARIABLES)
    pilot.env[variable.name] = random_value(rng)
    return variable.name


def mutate_attributes(pilot: Pilot, rng: random.Random) -> str:
    pilot.attributes.write_bytes(random_attributes(rng).encode("utf-8", "surrogateescape"))
    return "attributes"


def mutate_token(pilot: Pilot, rng: random.Random) -> str:
    pilot.write_token(
        random_token(rng, pilot.now), name=rng.choice(["flock.opensciencegrid.org", "x"])
    )
    return "token"


MUTATIONS: list[Mutation] = [mutate_variable] * 6 + [mutate_attributes] * 2 + [mutate_token] * 2


def test_no_input_a_site_controls_makes_check_raise(tmp_path: Path) -> None:
    """CASES seeded cases, one changed input each: check ends in 0, 69 or 78, never raises.

    Every variable of the settings table, the extra-attributes file and a token file
    get random and adversarial values (unicode lookalike digits, control characters,
    lone surrogates, 70 KB strings, 600-term ``&&`` chains, IPv6 zones, ``1e309``...).
    """
    rng = random.Random(FUZZ_SEED)
    started = time.monotonic()
    touched: set[str] = set()
    verified = 0
    for case in range(CASES):
        pilot = Pilot(tmp_path / f"case{case}", now=1_790_000_000)
        what = rng.choice(MUTATIONS)(pilot, rng)
        touched.add(what)
        verify = verified < RENDER_CHECKS and rng.random() < 0.2
        try:
            code, findings = check_in_process(pilot, case, verify=verify)
        except Exception as error:  # the contract under test: nothing escapes
            pytest.fail(f"case {case} ({what}) raised {type(error).__name__}: {error!r}"[:2000])
        verified += verify
        assert code in ALLOWED_EXITS, (case, what, [f.as_line() for f in findings])
    assert {v.name for v in VARIABLES} <= touched, "every variable gets fuzzed"
    assert time.monotonic() - started < 30


def test_every_adversarial_value_of_every_variable_is_judged_without_raising() -> None:
    """Systematic, not random: each ADVERSARIAL value in each variable of the settings
    table, through the settings loader, alone and in the valid baseline."""
    from ospool_ep.inputs.settings import load_settings

    base = {"GLIDEIN_Site": "Example Site", "GLIDEIN_ResourceName": "Example_CE"}
    for variable in VARIABLES:
        for value in ADVERSARIAL:
            findings = Findings()
            try:
                load_settings({**base, variable.name: value}, findings=findings)
            except Exception as error:  # the contract under test: nothing escapes
                pytest.fail(f"{variable.name}={value[:80]!r} raised {error!r}"[:2000])
            for finding in findings:
                finding.as_line().encode("utf-8")


def test_every_adversarial_value_and_name_in_the_attributes_file_is_judged_without_raising() -> (
    None
):
    """Each ADVERSARIAL value as an attribute's value and as its name: a FAIL naming the
    line or a valid attribute, never an exception."""
    from ospool_ep.inputs.attributes import parse_extra_attributes

    for value in ADVERSARIAL:
        for text in (f"FOO = {value}\n", f"{value} = 1\n", value):
            findings = Findings()
            try:
                parse_extra_attributes(text, source="extra.cfg", findings=findings)
            except Exception as error:  # the contract under test: nothing escapes
                pytest.fail(f"{text[:80]!r} raised {error!r}"[:2000])
            for finding in findings:
                finding.as_line().encode("utf-8")


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("GLIDEIN_Start_Extra", " && ".join(["True"] * 600)),
        ("GLIDEIN_Start_Extra", "(" * 150 + "True" + ")" * 150),
        ("POOL", "[fe80::1%$(X)]:9618"),
        ("CONDOR_HOST", "[fe80::1%25eth0]"),
        ("NUM_CPUS", "\uff11"),
        ("ACCEPT_JOBS_FOR_HOURS", "1e309"),
    ],
    ids=["600-and-terms", "150-parens", "zone-macro", "zone-uri-escape", "fullwidth", "1e309"],
)
def test_a_real_check_process_on_fuzzed_input_exits_78_without_a_traceback(
    tmp_path: Path, name: str, value: str
) -> None:
    """The values the fuzzer found breaking things, through the real ``ospool-ep check``."""
    pilot = Pilot(tmp_path, now=int(time.time()))
    env = {**pilot.env, "PATH": os.environ.get("PATH", "/usr/bin:/bin"), name: value}
    done = subprocess.run(
        [sys.executable, "-m", "ospool_ep", "check"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 78, output
    assert "Traceback" not in output
    assert any(line.startswith("FAIL") and name in line for line in output.splitlines()), output


@pytest.mark.parametrize("digits", ["\uff11", "\u0661", "\u00b2", "1\uff10", "\u0967\u0966"])
def test_a_number_in_other_scripts_digits_is_not_a_number(digits: str) -> None:
    """``str.isdigit`` and ``\\d`` take fullwidth or Arabic-Indic digits; HTCondor does not.
    Every whole-number variable refuses them instead of reading them as a number."""
    from ospool_ep.inputs import values

    numeric = [v for v in VARIABLES if v.name in {"NUM_CPUS", "MEMORY", "METRICS_PORT"}]
    for variable in [*numeric, *(v for v in VARIABLES if v.name == "PILOT_WALLTIME")]:
        with pytest.raises(values.Invalid):
            variable.parse(digits)
    with pytest.raises(values.Invalid):
        values.parse_host_port("cm.example.org:\uff19\uff16\uff11\uff18")
