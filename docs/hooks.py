"""MkDocs hooks: the pages made from the code, never copied by hand.

- ``<!-- generated: command-line -->``: ``covguard --help`` and each command's help, from
  the argparse parser itself;
- ``<!-- generated: routes -->``: the control routes, from the route table the doors
  build (each handler's docstring says what it does);
- ``changelog.md``: CHANGELOG.md, which lives at the repository's root.
"""

from __future__ import annotations

import argparse
import inspect
import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from mkdocs.structure.files import File, Files

from wsgi_covguard import cli
from wsgi_covguard.control import LiveControls
from wsgi_covguard.dashboard import Dashboard
from wsgi_covguard.settings import CONTROL_PREFIX, SHUTDOWN_PATH

ROOT = Path(__file__).resolve().parent.parent


def on_files(files: Files, config: Any) -> Files:
    changelog = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    files.append(File.generated(config, "changelog.md", content=changelog))
    return files


def on_page_markdown(markdown: str, page: Any, config: Any, files: Files) -> str:
    markdown = markdown.replace("<!-- generated: command-line -->", _command_line())
    return markdown.replace("<!-- generated: routes -->", _routes())


def _command_line() -> str:
    os.environ["COLUMNS"] = "100"  # argparse wraps at the terminal's width: a fixed one
    parser = cli._parser()
    blocks = [f"```text\n{parser.format_help()}```"]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                blocks.append(f"### `covguard {name}`\n\n```text\n{sub.format_help()}```")
    return "\n\n".join(blocks)


def _routes() -> str:
    """The table of every route the door serves (the shutdown route, then the others)."""
    nobody: Any = SimpleNamespace(session=None)  # the handlers are only read, never called
    routes = [
        *LiveControls(nobody, lambda: 0, lambda seconds: None).routes(CONTROL_PREFIX),
        *Dashboard(nobody).routes(CONTROL_PREFIX),
    ]
    rows = [
        "| method | path | credentials | what it does |",
        "|---|---|---|---|",
        f"| POST | `{SHUTDOWN_PATH}` | Bearer token | let the requests in flight finish, save"
        " every process's data, stop the server through its own clean path (202) |",
    ]
    for route in routes:
        doc = inspect.getdoc(route.handler) or ""
        what = " ".join(doc.split("\n\n")[0].split()).replace("|", "\\|")
        path = route.path.replace("<rest:rest>", "…")
        who = "Bearer token, or the dashboard's password" if route.read_only else "Bearer token"
        rows.append(f"| {route.method} | `{path}` | {who} | {what} |")
    return "\n".join(rows)
