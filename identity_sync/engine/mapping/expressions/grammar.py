"""The grammar of Entra's mapping expressions (provisioning-engine.md §2.2), embedded as a string so
that packaging needs no data file, and the one LALR parser built from it.

The language is VBA-like: everything is a call ``Name(arg, ...)``; an argument is an attribute
``[name]``, a string ``"..."`` (``\\"`` and ``\\\\`` are escapes), an integer (``7``, ``-10``), a VB
hex literal (``&HF7``), a bare enum identifier (``vbTextCompare``), a nested call, one comparison
``a = b`` (``= <> > >= < <=``, as in ``IIF([country]="USA", ...)``), or nothing at all (``Replace([x],
"a", , , "b", , )``). Comparisons do not chain: Entra has no AND/OR either (§2.3 IIF).
"""

from __future__ import annotations

from functools import cache

from lark import Lark

GRAMMAR = r"""
start: expression

?expression: operand
           | operand COMPARISON operand  -> comparison

?operand: call
        | ATTRIBUTE                      -> attribute
        | STRING                         -> string
        | INTEGER                        -> integer
        | HEX                            -> hex
        | NAME                           -> identifier

call: NAME "(" arguments ")"
arguments: argument ("," argument)*
argument: expression?

COMPARISON: "<>" | "<=" | ">=" | "=" | "<" | ">"
ATTRIBUTE: /\[[^\]\r\n]*\]/
STRING: /"(?:[^"\\]|\\.)*"/s
INTEGER: /[+-]?[0-9]+/
HEX: /&[Hh][0-9A-Fa-f]+/
NAME: /[A-Za-z_][A-Za-z0-9_]*/

%ignore /[ \t\r\n\f\v\u00a0]+/
"""


@cache
def parser() -> Lark:
    """The LALR parser (built once per process, on first use: about 20 ms)."""
    return Lark(GRAMMAR, parser="lalr", propagate_positions=False, maybe_placeholders=False)
