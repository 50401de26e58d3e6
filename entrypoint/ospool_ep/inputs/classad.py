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

from ospool_ep.inputs.values import (
    EXPRESSION_FIX,
    Invalid,
    config_unsafe_reason,
    parse_expression_text,
    shown,
)

MAX_EXPRESSION_CHARS = 8192
"""Longest expression accepted. HTCondor has no such limit of its own; a START
clause or an attribute is a line or two, and a bigger value is a mistake (a file
pasted into a variable) that would only slow every match."""

HEADROOM_LEVELS = 32
"""Nesting levels an expression must leave free in HTCondor's ClassAd library.

The library refuses to parse an expression nested about 165 parentheses deep and
fails to evaluate one about 400 operators deep (measured with HTCondor 25.14: a
chain of 401 ``&&`` terms parses but cannot be evaluated). The pilot nests the
site's clause inside its own START, and HTCondor's evaluator in the startd has the
same limits, so an expression is checked wrapped in this many more parentheses:
what passes here still parses and evaluates there."""

# What the library raises for text it cannot parse or evaluate: PyPI's htcondor
# 25 raises ClassAdException for both; Debian's 23.9 (the image) raises
# SyntaxError or ValueError and has no such class. Anything else it raises for a
# string is a verdict on that string too, never a reason to crash (SPEC 5).
LIBRARY_ERRORS: tuple[type[Exception], ...] = (Exception,)


_TOO_BIG = (
    "is too long or deeply nested for HTCondor's ClassAd evaluator "
    "(a chain of a few hundred operators cannot be evaluated)"
)
_TOO_DEEP = (
    "is nested too deeply for HTCondor's ClassAd parser "
    f"(it must leave {HEADROOM_LEVELS} levels of parentheses to spare)"
)
_TOO_LONG = f"is longer than the {MAX_EXPRESSION_CHARS} characters allowed"
SIMPLIFY_FIX = (
    "simplify the expression: fewer terms and less nesting, e.g. "
    'member(TARGET.ProjectName, {"A", "B"}) instead of a long chain of ||'
)


def expression_fix(reason: str) -> str | None:
    """The fix for an :func:`expression_error` reason about size, or None for other reasons."""
    return SIMPLIFY_FIX if reason in (_TOO_BIG, _TOO_DEEP, _TOO_LONG) else None


_LEADING_ZERO = re.compile(r"(?<![\w.])0[0-9xX]")
_LEADING_ZERO_REASON = (
    "has a number with a leading zero (like 07 or 0x1F), which HTCondor's ClassAd "
    "library reads differently from one moment to the next; write numbers in decimal"
)


def _outside_quotes(text: str) -> str:
    """``text`` with the insides of "strings" and 'quoted names' blanked out.

    Backslashes are refused before this is used, so a quote always ends its literal.
    """
    return re.sub(r"\"[^\"]*\"?|'[^']*'?", lambda m: " " * len(m.group()), text)


def _parsed(text: str) -> object | None:
    """The library's tree for ``text``, or None if it cannot parse it."""
    try:
        tree: object = classad2.ExprTree(text)
    except LIBRARY_ERRORS:
        return None
    return tree


def _evaluates(tree: object) -> bool:
    """True if the library can evaluate ``tree`` (to any value, UNDEFINED and ERROR included)."""
    try:
        tree.eval()  # type: ignore[attr-defined]
    except LIBRARY_ERRORS:
        return False
    return True


def expression_error(text: str) -> str | None:
    """Why ``text`` is not exactly one safe ClassAd expression, or None if it is.

    ``classad2.ExprTree("1; b = 2")`` silently keeps only ``1``, so the text is
    also parsed inside parentheses, where trailing garbage is a syntax error
    (SPEC 5.3). It must also parse and evaluate with :data:`HEADROOM_LEVELS` of
    nesting to spare, so HTCondor itself can always use it.
    """
    if not text.strip():
        return "is empty"
    unsafe = config_unsafe_reason(text)
    if unsafe:
        return unsafe
    if len(text) > MAX_EXPRESSION_CHARS:
        return _TOO_LONG
    # Measured with HTCondor 25.14: "(0x1F)" parses as "(0)", and after the library
    # has evaluated any record ("[a = 1]") the same text, and "07", fail to parse.
    if _LEADING_ZERO.search(_outside_quotes(text)):
        return _LEADING_ZERO_REASON
    return _library_error(text)


def _library_error(text: str) -> str | None:
    """Why HTCondor's ClassAd library cannot use ``text`` (checked safe and short), or None."""
    if _parsed(text) is None or _parsed(f"({text})") is None:
        return "is not a valid ClassAd expression"
    tree = _parsed("(" * HEADROOM_LEVELS + text + ")" * HEADROOM_LEVELS)
    if tree is None:
        return _TOO_DEEP
    return None if _evaluates(tree) else _TOO_BIG


def boolean_expression_error(text: str) -> str | None:
    """Why a (valid) expression can never be a START clause, or None.

    Only constant parts can be judged without a job: ``"yes"`` or ``5`` are
    never true or false, so START would be ERROR and no job would ever start.
    Call it only on text :func:`expression_error` accepted.
    """
    try:
        value = classad2.ExprTree(text).eval()
    except LIBRARY_ERRORS:
        return "cannot be evaluated by HTCondor's ClassAd library"
    # classad2.Value (undefined/error) is an IntEnum: test it before int.
    if isinstance(value, bool | classad2.Value):
        return None  # a boolean, or depends on the job/machine (undefined here)
    # Anything else is a constant of another type: a string, number, list, a
    # record ("[a = 1]", a classad2.ClassAd) or a time.
    kind = "record ([...])" if isinstance(value, classad2.ClassAd) else type(value).__name__
    return f"is a constant {kind}, not a boolean"


def parse_expression(raw: str) -> str:
    """A START clause: one safe line (:func:`parse_expression_text`) that HTCondor's
    ClassAd library parses, evaluates and could take as a boolean."""
    value = parse_expression_text(raw)
    error = expression_error(value) or boolean_expression_error(value)
    if error:
        raise Invalid(f"{shown(value)} {error}", expression_fix(error) or EXPRESSION_FIX)
    return value


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
