"""Where each layer of a prototxt is written: file, line and column of its ``layer {`` / ``layers {`` block.

The protobuf text parser gives no positions, so the text is scanned here with the text format's own lexical rules
(``#`` comments to the end of the line, ``"..."`` / ``'...'`` strings with backslash escapes, ``{}`` and ``<>``
message delimiters, ``[...]`` lists).  Only fields of the net itself count (brace depth 0): a V0 ``layers { layer {
... } }`` is one layer, at its ``layers``; a ``layer {`` inside a comment, a string or another message is none.
The blocks are then matched in order to the layers of the parsed net (:func:`layer_locations`), following the
upgrade (:mod:`harness.upgrade`): V0 ``padding`` layers are folded away, and the legacy ``input:`` fields become the
``Input`` layer placed first, located at the first ``input:``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Iterator, NamedTuple

from .net import Location

__all__ = ["Blocks", "scan_blocks", "layer_locations"]

_TOKEN = re.compile(r"""
      (?P<nl>\n)
    | (?P<ws>[ \t\r\f\v]+)
    | (?P<comment>\#[^\n]*)
    | (?P<str>"(?:[^"\\\n]|\\.)*"?|'(?:[^'\\\n]|\\.)*'?)
    | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
    | (?P<punct>[{}<>\[\]:,;])
    | (?P<other>[^\s{}<>\[\]:,;\#"']+)
""", re.VERBOSE)

_OPEN, _CLOSE = "{<", "}>"


class _Token(NamedTuple):
    kind: str
    text: str
    line: int
    column: int


def _tokens(text: str) -> Iterator[_Token]:
    """The significant tokens of prototxt text (comments and white space dropped), each with its 1-based position."""
    line, start, pos = 1, 0, 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:  # an unpaired quote or stray byte: the parser has already accepted the text, so skip it
            pos += 1
            continue
        kind = m.lastgroup or "other"
        if kind == "nl":
            line, start = line + 1, m.end()
        elif kind not in ("ws", "comment"):
            yield _Token(kind, m.group(), line, m.start() - start + 1)
        pos = m.end()


@dataclass
class Blocks:
    """The net-level fields found: ``layer`` blocks (V2), ``layers`` blocks (V1/V0) and the first ``input``, each as
    ``(line, column)`` of the field name (of the element's ``{`` for a list ``layer: [{...}, {...}]``)."""

    layer: list[tuple[int, int]] = field(default_factory=list)
    layers: list[tuple[int, int]] = field(default_factory=list)
    first_input: tuple[int, int] | None = None


def scan_blocks(text: str) -> Blocks:
    """Scan prototxt text for the net's ``layer``/``layers`` blocks and its first ``input`` field."""
    out = Blocks()
    depth, in_list = 0, 0
    pending: _Token | None = None  # a net-level field name whose value has not started yet
    prev = ""
    for tok in _tokens(text):
        if tok.text in _OPEN and tok.kind == "punct":
            if depth == 0 and pending is not None:
                _record(out, pending, tok if in_list else pending)
                pending = pending if in_list else None
            depth += 1
        elif tok.text in _CLOSE and tok.kind == "punct":
            depth = max(depth - 1, 0)
        elif depth == 0 and tok.text == "[" and pending is not None:
            in_list += 1
        elif depth == 0 and tok.text == "]" and in_list:
            in_list, pending = in_list - 1, None
        elif depth == 0 and not in_list and tok.kind == "ident" and prev != ":":
            pending = tok if tok.text in ("layer", "layers") else None
            if tok.text == "input" and out.first_input is None:
                out.first_input = (tok.line, tok.column)
        prev = tok.text if tok.kind == "punct" else tok.kind
    return out


def _record(out: Blocks, name: _Token, at: _Token) -> None:
    getattr(out, name.text).append((at.line, at.column))


def layer_locations(netp, text: str, source: str) -> list[Location | None]:
    """The location of every layer of the *upgraded* net (``harness.upgrade.upgrade_net(netp).layer``), in order,
    for ``netp`` parsed from ``text`` (read from ``source``).  Empty when the blocks found do not line up with the
    parsed layers (then no layer gets a location; nothing else depends on them)."""
    blocks = scan_blocks(text)
    if len(netp.layers):
        if len(blocks.layers) != len(netp.layers) or len(netp.layer):
            return []
        kept = [at for at, v1 in zip(blocks.layers, netp.layers)
                if not (v1.HasField("layer") and v1.layer.type == "padding")]  # folded into the next layer
    elif len(blocks.layer) == len(netp.layer):
        kept = list(blocks.layer)
    else:
        return []
    if len(netp.input):
        if blocks.first_input is None:
            return []
        kept.insert(0, blocks.first_input)
    return [Location(source, line, column) for line, column in kept]
