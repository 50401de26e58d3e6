"""What classad_text tells a site about an expression, pinned by value (SPEC 5.3).

Each reason is the text a site reads after the variable's name (``START_EXPR: 'x'
is ...``), so the reasons are pinned exactly, once each, together with the limits
they describe (the length limit at its boundary) and the fix offered for them.
"""

from __future__ import annotations

import pytest

from ospool_ep.inputs.classad import (
    MAX_EXPRESSION_CHARS,
    SIMPLIFY_FIX,
    boolean_expression_error,
    expression_error,
    expression_fix,
)

TOO_BIG = (
    "is too long or deeply nested for HTCondor's ClassAd evaluator "
    "(a chain of a few hundred operators cannot be evaluated)"
)
TOO_DEEP = (
    "is nested too deeply for HTCondor's ClassAd parser "
    "(it must leave 32 levels of parentheses to spare)"
)
TOO_LONG = "is longer than the 8192 characters allowed"
LEADING_ZERO = (
    "has a number with a leading zero (like 07 or 0x1F), which HTCondor's ClassAd "
    "library reads differently from one moment to the next; write numbers in decimal"
)
NOT_VALID = "is not a valid ClassAd expression"

REASONS = [
    ("", "is empty"),
    ("   ", "is empty"),
    ("True" + " " * (MAX_EXPRESSION_CHARS - 3), TOO_LONG),
    ("(" * 140 + "True" + ")" * 140, TOO_DEEP),
    (" && ".join(["True"] * 401), TOO_BIG),
    ("Memory > 07", LEADING_ZERO),
    ("(0x1F)", LEADING_ZERO),
    ('"a"07', LEADING_ZERO),
    # A string is blanked, not cut out: the zero does not join the name before it.
    ('x"a"07', LEADING_ZERO),
    ("1 +", NOT_VALID),
    ("1; b = 2", NOT_VALID),
    # Would close the parenthesis the pilot puts around the site's clause.
    ("True) || (True", NOT_VALID),
]
REASON_IDS = [
    "empty",
    "blank",
    "one-char-too-long",
    "too-deep",
    "too-big",
    "leading-zero",
    "hex",
    "zero-after-a-string",
    "zero-after-a-name-and-a-string",
    "incomplete",
    "two-expressions",
    "closes-the-pilots-parenthesis",
]


@pytest.mark.parametrize(("text", "reason"), REASONS, ids=REASON_IDS)
def test_each_refused_expression_gets_its_own_reason(text: str, reason: str) -> None:
    assert expression_error(text) == reason


@pytest.mark.parametrize(
    "text",
    [
        "True" + " " * (MAX_EXPRESSION_CHARS - 4),
        'TARGET.ProjectName == "07"',
        "'07' == 1",
        'Name == "a" && Memory > 1.07',
        "(" * 100 + "True" + ")" * 100,
    ],
    ids=[
        "exactly-the-length-limit",
        "zero-in-a-string",
        "zero-in-a-quoted-name",
        "decimals",
        "nested",
    ],
)
def test_expressions_at_the_limits_and_zeros_inside_quotes_are_accepted(text: str) -> None:
    assert expression_error(text) is None


@pytest.mark.parametrize(("text", "reason"), REASONS[2:5], ids=REASON_IDS[2:5])
def test_a_size_reason_comes_with_the_simplify_fix(text: str, reason: str) -> None:
    assert expression_fix(reason) == SIMPLIFY_FIX
    assert SIMPLIFY_FIX.startswith("simplify the expression: fewer terms and less nesting")


@pytest.mark.parametrize("reason", ["is empty", LEADING_ZERO, NOT_VALID, "contains a backslash"])
def test_other_reasons_leave_the_fix_to_the_caller(reason: str) -> None:
    assert expression_fix(reason) is None


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ('"yes"', "str"),
        ("5", "int"),
        ("2.5", "float"),
        ("{1, 2}", "list"),
        ("[a = 1]", "record ([...])"),
        ("[]", "record ([...])"),
        ('absTime("2024-01-01T00:00:00Z")', "datetime"),
    ],
)
def test_a_constant_that_is_not_a_boolean_can_never_be_a_start_clause(text: str, kind: str) -> None:
    assert boolean_expression_error(text) == f"is a constant {kind}, not a boolean"


@pytest.mark.parametrize(
    "text",
    [
        "True",
        "false",
        'TARGET.ProjectName == "X"',
        "Memory",
        "undefined",
        "error",
        "[a = 1].a == 1",
    ],
)
def test_booleans_and_clauses_that_depend_on_the_job_are_left_to_htcondor(text: str) -> None:
    assert boolean_expression_error(text) is None


def test_the_start_clause_judgement_refuses_text_it_cannot_evaluate_without_raising() -> None:
    """Called on text that skipped :func:`expression_error`, it still gives a verdict."""
    assert boolean_expression_error("(1") == "cannot be evaluated by HTCondor's ClassAd library"
