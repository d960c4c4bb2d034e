"""The entry point's own lines, measured however the server is started.

``coverage run``, ``covguard serve``, ``covguard run`` and the pytest plugin start
coverage before the entry point is imported: its module-level lines are measured
like any module's. A server started by its own command line (``SERVER
wsgi:application``) imports it first, and :func:`~wsgi_covguard.start` runs inside
that import: coverage.py's tracers only follow frames that begin after
they start, so the module body still running (the entry point's, and that of any
module still importing it) would have no line measured at all.

Such a body that runs straight through (no jump, no ``try`` or ``with``, no function
or class of its own made before coverage started, so that none of its code ran
unseen) runs each of its instructions once, in order: the lines a tracer would have
recorded are read from its code object, in the order the tracer would have seen them,
which also gives the arcs. The tests compare them with coverage.py's own, core by
core. Any other body is said in one line: its lines cannot be told, and are not
guessed.
"""

from __future__ import annotations

import dis
import itertools
from collections.abc import Iterator
from types import CodeType, FrameType

__all__ = ["arcs_of", "importing", "lines_run"]

#: The frames through which ``import`` runs a module body (frozen since 3.11;
#: ``importlib/_bootstrap.py`` where the interpreter was built without them).
_IMPORT_MACHINERY = ("<frozen importlib._bootstrap>", "importlib/_bootstrap.py")
_JUMPS = frozenset([*dis.hasjrel, *dis.hasjabs, *getattr(dis, "hasjump", ())])
_MAKERS = frozenset(dis.opmap[name] for name in ("MAKE_FUNCTION", "LOAD_BUILD_CLASS"))


def importing(frame: FrameType | None) -> Iterator[FrameType]:
    """The module bodies running on ``frame``'s stack because they are being imported,
    innermost first (a body run otherwise, ``python -m``'s or ``exec``'s, is not one)."""
    while frame is not None:
        caller = frame.f_back
        if (
            frame.f_code.co_name == "<module>"
            and caller is not None
            and caller.f_code.co_filename.endswith(_IMPORT_MACHINERY)
        ):
            yield frame
        frame = caller


def lines_run(code: CodeType, now: int) -> list[int] | str:
    """The line events a tracer sees as module body ``code`` runs to its end, in order;
    or why they cannot be told, its instruction at offset ``now`` having run untraced.

    A tracer is told of a line when an instruction starts that belongs to another line
    than the one before it (CPython's rule for ``sys.settrace`` and ``sys.monitoring``
    alike); instructions of no line, and line 0 (``RESUME``), are never reported.
    """
    lines: dict[int, int | None] = {}
    for instruction in dis.get_instructions(code):
        line = lines[instruction.offset] = _line_of(instruction)
        if instruction.opcode in _JUMPS:
            return f"it branches at module level (line {line})"
        if instruction.opcode in _MAKERS and instruction.offset < now:
            return f"it defines a function or class before start() (line {line})"
    handlers = getattr(dis.Bytecode(code), "exception_entries", None)  # 3.11+
    if handlers:
        return f"a try or a with at module level (line {lines.get(handlers[0].start)})"
    events: list[int] = []
    for _start, _end, line in code.co_lines():
        if line and (not events or events[-1] != line):
            events.append(line)
    return events


def arcs_of(code: CodeType, events: list[int]) -> list[tuple[int, int]]:
    """The arcs coverage.py records for ``events``: entering the body (from minus its
    first line number), each line to the next, and leaving it."""
    enter = -code.co_firstlineno
    path = [enter, *events, enter]
    return list(itertools.pairwise(path))


def _line_of(instruction: dis.Instruction) -> int | None:
    return instruction.positions.lineno if instruction.positions else None
