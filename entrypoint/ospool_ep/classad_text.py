"""Safe ClassAd text: checking site-supplied expressions and quoting strings.

Everything a site controls and that ends up in HTCondor configuration passes
through here first. HTCondor's config language has no quoting of its own: a
newline starts a new knob, a trailing backslash continues the line, ``$(``
expands a macro and ``$ENV(...)``/``$RANDOM_INTEGER`` are evaluated. So the rule
is simple and strict: such characters are refused, never escaped.
"""

from __future__ import annotations

import re

import classad2

# What a failed parse raises: PyPI's htcondor 25 has ClassAdException; Debian's
# 23.9 (the image) raises SyntaxError and has no such class.
PARSE_ERRORS: tuple[type[Exception], ...] = (
    getattr(classad2, "ClassAdException", ValueError),
    ValueError,
    SyntaxError,
    TypeError,
)

# Characters that could add, continue or alter a configuration line, or smuggle
# in macro expansion. Tab is allowed nowhere either: values are single-line text.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def config_unsafe_reason(text: str) -> str | None:
    """Why ``text`` may not be written into an HTCondor config value, or None if safe."""
    if "\n" in text or "\r" in text:
        return "contains a line break"
    if _CONTROL.search(text):
        return "contains a control character"
    if "$" in text:
        return "contains '$', which HTCondor would expand as a macro"
    if "\\" in text:
        return "contains a backslash"
    return None


def expression_error(text: str) -> str | None:
    """Why ``text`` is not exactly one safe ClassAd expression, or None if it is.

    ``classad2.ExprTree("1; b = 2")`` silently keeps only ``1``, so the text is
    also parsed inside parentheses, where trailing garbage is a syntax error
    (SPEC 5.3).
    """
    if not text.strip():
        return "is empty"
    unsafe = config_unsafe_reason(text)
    if unsafe:
        return unsafe
    for candidate in (text, f"({text})"):
        try:
            classad2.ExprTree(candidate)
        except PARSE_ERRORS:
            return "is not a valid ClassAd expression"
    return None


def boolean_expression_error(text: str) -> str | None:
    """Why a (valid) expression can never be a START clause, or None.

    Only constant parts can be judged without a job: ``"yes"`` or ``5`` are
    never true or false, so START would be ERROR and no job would ever start.
    """
    value = classad2.ExprTree(text).eval()
    # classad2.Value (undefined/error) is an IntEnum: test it before int.
    if isinstance(value, bool | classad2.Value) or not isinstance(value, str | int | float | list):
        return None  # a boolean, or depends on the job/machine (undefined here)
    return f"is a constant {type(value).__name__}, not a boolean"


def string_literal(value: str) -> str:
    """``value`` as a ClassAd string literal for a config file.

    Callers validate first (no quotes, backslashes, ``$`` or control characters
    in names and sites); this refuses anything that slipped through rather than
    writing it.
    """
    reason = config_unsafe_reason(value)
    if reason or '"' in value:
        raise ValueError(
            f"refusing to write an unsafe string into HTCondor config: {reason or 'quote'}"
        )
    return f'"{value}"'
