"""Which templates each test had the server render: the impact map's view of templates.

A changed template is not a line coverage.py measures, so without more the impact map
(:mod:`.impact`) must run every test when one changes. With per-test contexts the server
also notes, under the context running, each template its engine loads: Jinja2's
``Environment.get_template`` / ``select_template`` (the paths every ``render_template``,
``{% extends %}``, ``{% include %}`` and ``{% import %}`` take, cached or not) and Django's
``Template._render`` (the method Django's own test instrumentation wraps to send
``template_rendered``). The hooks go in when the engine's module is imported (an import
hook; nothing is imported that the app would not import), or at once if it already is,
and cost a call and a dictionary lookup per template loaded (0.35 µs on a cached Jinja2
``get_template`` of 0.53 µs; a page of two templates takes some 200 µs).

Each process writes what it noted beside its data file, before each save, as
``.covguard-templates.<host>.pid<pid>.json`` (the ``.covguard*`` of a ``.gitignore``
covers it). :func:`read_for` pairs these with the parallel data files of the same
processes and says which contexts they vouch for; a data file without its note (it was
lost, or the data combined before it was mapped) makes every template change run every
test again, as without this module.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.abc
import importlib.machinery
import importlib.util
import json
import logging
import os
import socket
import sys
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar

from .log import say

__all__ = ["NOTE_PREFIX", "Rendered", "TemplateLog", "read_for"]

#: The notes' names: ``<NOTE_PREFIX><host>.pid<pid>.json`` beside the data files.
NOTE_PREFIX = ".covguard-templates."
_FORMAT = 1
#: How much older than its data file a note may be: both are written at each save, the
#: note first; a note far older is a former process's with the same pid.
_NOTE_SLACK = 5.0


class TemplateLog:
    """The templates this process's engines loaded, by the context running then.

    :param context: returns the context running now (None before the first switch).
    """

    def __init__(self, context: Callable[[], str | None]) -> None:
        self._context = context
        #: context ("" before any) -> template file -> its root (the loader's folder).
        self.rendered: dict[str, dict[str, str]] = {}
        #: Why some loads cannot be noted (an engine whose hook did not go in), or None.
        self.unknown: str | None = None
        self._said = False
        #: The engines' modules hooked: one imported but not hooked leaves its loads unseen.
        self._hooked: set[str] = set()

    def note(self, filename: str | None, name: str | None) -> None:
        """``filename`` (the template's file; None for a string template) was loaded by
        the name ``name``: its root is the filename without the name."""
        if not filename:
            return
        files = self.rendered.setdefault(self._context() or "", {})
        if filename not in files:
            files[filename] = _root(os.path.abspath(filename), name)

    def forget(self, *, keep_start_up: bool) -> None:
        """Forget what was noted (the data was reset), except start-up's if asked."""
        start_up = self.rendered.get("", {}) if keep_start_up else {}
        self.rendered = {"": dict(start_up)} if start_up else {}

    def install(self) -> None:
        """Hook every engine this module knows, now or when it is imported."""
        for module, hook in _HOOKS.items():
            loaded = sys.modules.get(module)
            if loaded is not None:
                self._hook(hook, loaded)
            else:
                _AfterImport.watch(module, functools.partial(self._hook, hook))

    def _hook(self, hook: Callable[[ModuleType, TemplateLog], None], module: ModuleType) -> None:
        try:
            hook(module, self)
            self._hooked.add(module.__name__)
        except AttributeError as exc:  # an engine release without the method hooked
            self.unknown = f"{module.__name__} cannot be followed ({exc})"
            say(f"templates are not recorded per test: {self.unknown}", logging.WARNING)

    def write(self, folder: str, contexts: Sequence[str | None]) -> None:
        """Write the note beside the data files in ``folder``; ``contexts``: every context
        this process switched to (they are what the note vouches for). A note that cannot
        be written is said once: its data then makes template changes run every test."""
        note = {
            "format": _FORMAT,
            "pid": os.getpid(),
            "contexts": sorted({context for context in contexts if context}),
            "rendered": {
                context: {os.path.abspath(file): root for file, root in dict(files).items()}
                for context, files in list(self.rendered.items())
            },
            "unknown": self.unknown or self._unhooked(),
        }
        path = Path(folder) / f"{NOTE_PREFIX}{_host()}.pid{os.getpid()}.json"
        partial = path.with_name(f"{path.name}.tmp")
        try:
            partial.write_text(json.dumps(note, separators=(",", ":")))
            os.replace(partial, path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                partial.unlink()
            if not self._said:
                self._said = True
                say(f"could not write {path} ({exc}): a changed template will run every test",
                    logging.WARNING)  # fmt: skip

    def _unhooked(self) -> str | None:
        """Why loads went unseen: an engine imported whose hook did not go in (its module
        loaded in a way the import hook could not follow), or None."""
        for module in _HOOKS:
            if module in sys.modules and module not in self._hooked:
                return f"{module} was imported without the hook that notes its templates"
        return None


def _root(filename: str, name: str | None) -> str:
    """The folder a loader found ``name`` in: ``filename`` less ``name``'s parts."""
    if name:
        parts = [part for part in name.replace("\\", "/").split("/") if part]
        path = Path(filename)
        if len(path.parts) > len(parts) and list(path.parts[-len(parts) :]) == parts:
            return str(Path(*path.parts[: -len(parts)]))
    return str(Path(filename).parent)


def _hook_jinja2(module: ModuleType, log: TemplateLog) -> None:
    environment = module.Environment
    for method in ("get_template", "select_template"):
        original = getattr(environment, method)
        if not getattr(original, "__covguard__", False):
            setattr(environment, method, _noting_loads(original, log))


def _noting_loads(original: Callable[..., Any], log: TemplateLog) -> Callable[..., Any]:
    def noting(self: Any, *args: Any, **kwargs: Any) -> Any:
        template = original(self, *args, **kwargs)
        log.note(template.filename, template.name)
        return template

    noting.__covguard__ = True  # type: ignore[attr-defined]
    noting.__wrapped__ = original  # type: ignore[attr-defined]
    return noting


def _hook_django(module: ModuleType, log: TemplateLog) -> None:
    template = module.Template
    original = template._render
    if getattr(original, "__covguard__", False):
        return

    def noting(self: Any, context: Any) -> Any:
        origin = self.origin
        log.note(origin.name if origin.loader is not None else None, origin.template_name)
        return original(self, context)

    noting.__covguard__ = True  # type: ignore[attr-defined]
    noting.__wrapped__ = original  # type: ignore[attr-defined]
    template._render = noting


#: module -> how to follow its engine's template loads.
_HOOKS: dict[str, Callable[[ModuleType, TemplateLog], None]] = {
    "jinja2.environment": _hook_jinja2,
    "django.template.base": _hook_django,
}


class _AfterImport(importlib.abc.MetaPathFinder):
    """Runs a callback once a module has been imported (executed), the first time."""

    _lock: ClassVar[threading.Lock] = threading.Lock()
    _waiting: ClassVar[dict[str, list[Callable[[ModuleType], None]]]] = {}
    _finder: ClassVar[_AfterImport | None] = None

    @classmethod
    def watch(cls, name: str, then: Callable[[ModuleType], None]) -> None:
        with cls._lock:
            cls._waiting.setdefault(name, []).append(then)
            if cls._finder is None:
                cls._finder = cls()
                sys.meta_path.insert(0, cls._finder)

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in self._waiting:
            return None
        with self._lock:
            callbacks = self._waiting.pop(fullname, [])
        spec = None
        for finder in list(sys.meta_path):  # the finders after us find the real spec
            find = getattr(finder, "find_spec", None)
            if finder is not self and find is not None:
                spec = find(fullname, path, target)
                if spec is not None:
                    break
        loader = spec.loader if spec is not None else None
        if not callbacks or loader is None or not hasattr(loader, "exec_module"):
            return spec
        execute = loader.exec_module

        def exec_then_hook(module: ModuleType) -> None:
            execute(module)
            for then in callbacks:
                then(module)

        loader.exec_module = exec_then_hook
        return spec


@dataclass
class Rendered:
    """The templates the data's contexts rendered, from the processes' notes."""

    #: context -> template file -> its root.
    by_context: dict[str, dict[str, str]] = field(default_factory=dict)
    #: The contexts the notes vouch for: every template they loaded was noted.
    contexts: set[str] = field(default_factory=set)
    #: Why the notes do not vouch for every data file's contexts, or None.
    unknown: str | None = None
    #: The notes read (to remove with their data files, once those are combined).
    notes: list[Path] = field(default_factory=list)


def read_for(data_files: Iterable[Path]) -> Rendered:
    """The notes of the processes that wrote ``data_files`` (coverage's parallel files,
    ``<data file>.<host>.pid<pid>.X...x``). A data file with contexts whose note is
    missing, older than it, unreadable or silent on one of its contexts leaves the
    templates unknown (:attr:`Rendered.unknown`): a note lost must not read as "no test
    rendered it"."""
    rendered = Rendered()
    for data_file in data_files:
        contexts = _contexts_of(data_file)
        if not contexts:
            continue  # no context: nothing was asked of this process per test
        note = _note_of(data_file)
        if note is None:
            rendered.unknown = rendered.unknown or (
                f"{data_file.name} has no {NOTE_PREFIX}*.json note of its process beside it"
                " (combined data? map the parallel data files with their notes)"
            )
            continue
        try:
            raw = json.loads(note.read_text())
            if raw.get("format") != _FORMAT:
                raise ValueError(f"format {raw.get('format')!r}")
            vouched = set(raw["contexts"])
            if not contexts <= vouched:
                raise ValueError(f"it does not name the context {min(contexts - vouched)!r}")
            if raw["unknown"]:
                rendered.unknown = rendered.unknown or str(raw["unknown"])
            for context, files in raw["rendered"].items():
                rendered.by_context.setdefault(context, {}).update(files)
            rendered.contexts |= vouched
            rendered.notes.append(note)
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            rendered.unknown = rendered.unknown or f"{note.name} cannot be used ({exc})"
    return rendered


def _contexts_of(data_file: Path) -> set[str]:
    """The non-empty contexts of a data file (none if it cannot be read: combining it
    fails louder)."""
    import coverage

    data = coverage.CoverageData(basename=str(data_file))
    try:
        data.read()
        return set(data.measured_contexts()) - {""}
    except (coverage.CoverageException, OSError, ValueError):
        return set()
    finally:
        data.close(force=True)


def _note_of(data_file: Path) -> Path | None:
    """The note written by the process that wrote ``data_file``, if it is there and fresh."""
    parts = data_file.name.split(".")
    pids = [i for i, part in enumerate(parts) if part.startswith("pid") and part[3:].isdigit()]
    if not pids or pids[-1] < 1:
        return None
    at = pids[-1]
    note = data_file.with_name(f"{NOTE_PREFIX}{parts[at - 1]}.{parts[at]}.json")
    try:
        if note.stat().st_mtime < data_file.stat().st_mtime - _NOTE_SLACK:
            return None
    except OSError:
        return None
    return note


def _host() -> str:
    """The host as coverage.py writes it in a parallel data file's name."""
    return socket.gethostname().replace(".", "_")
