"""How long choosing the affected tests takes on a large codebase: ``make bench``.

The project is Django's own source (some 74k statements, the codebase of
``benchmarks/scale.py``) in a git repository; its impact map holds 200 tests, each of which
ran a quarter of the files and two fifths of the statements in each (drawn at random with a
fixed seed from the real statements, as ``ast`` finds them: a synthetic map, of a real
map's size). A line is then inserted into a function body in each of ten files, and
``read`` + ``select`` are timed, median of five; the map's size is printed too. It
prints a table and checks nothing (the goal is in the README).
"""

from __future__ import annotations

import ast
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import django
from coverage import CoverageData

from wsgi_covguard import impact

TESTS = 200
ROUNDS = 5


def git(root: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=b", "-c", "user.email=b@example.com", *args],
        cwd=root, check=True, capture_output=True,
    )  # fmt: skip


def statements(source: str) -> list[int]:
    return sorted(
        {node.lineno for node in ast.walk(ast.parse(source)) if isinstance(node, ast.stmt)}
    )


def main() -> int:
    chance = random.Random(2026)  # noqa: S311 (a benchmark's draw, not a secret)
    with tempfile.TemporaryDirectory(prefix="covguard-impact-") as folder:
        root = Path(folder)
        shutil.copytree(Path(django.__file__).parent, root / "django",
                        ignore=shutil.ignore_patterns("__pycache__", "locale"))  # fmt: skip
        git(root, "init", "-q", "-b", "main")
        git(root, "add", ".")
        git(root, "commit", "-qm", "django")
        files = {}
        for path in sorted((root / "django").rglob("*.py")):
            content = path.read_bytes()
            try:
                found = statements(content.decode())
            except (SyntaxError, UnicodeDecodeError):
                continue
            if found:
                files[path.relative_to(root).as_posix()] = (content, found)
        total = sum(len(lines) for _, lines in files.values())
        tests = {}
        for number in range(TESTS):
            ran = {}
            for path in chance.sample(sorted(files), len(files) // 4):
                lines = files[path][1]
                ran[path] = sorted(chance.sample(lines, len(lines) * 2 // 5))
            tests[f"tests/test_e2e_{number // 10}.py::test_{number}"] = ran
        the_map = impact.ImpactMap(
            commit=subprocess.run(
                ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
            ).stdout.strip(),
            blobs={path: impact.blob_id(content) for path, (content, _) in files.items()},
            startup={},
            tests=tests,
        )
        map_path = root / impact.MAP_NAME
        map_path.write_text(the_map.to_json())
        recording = record_times(root, tests)
        (root / ".gitignore").write_text(f"{impact.MAP_NAME}\n.gitignore\n")

        changed = 0
        for path in chance.sample(sorted(files), len(files)):
            source = (root / path).read_text()
            bodies = [node.body for node in ast.walk(ast.parse(source))
                      if isinstance(node, ast.FunctionDef) and len(node.body) > 1]  # fmt: skip
            if not bodies:
                continue
            last = bodies[0][-1]  # a line before it: inside the body, whatever comes after
            lines = source.splitlines(keepends=True)
            lines.insert(last.lineno - 1, " " * last.col_offset + "pass  # changed\n")
            (root / path).write_text("".join(lines))
            changed += 1
            if changed == 10:
                break
        times, chosen = [], 0
        for _ in range(ROUNDS):
            began = time.perf_counter()
            selection = impact.select(impact.read(map_path), root)
            chosen = sum(1 for test in tests if selection.why(test, True) is not None)
            times.append(time.perf_counter() - began)
        assert selection.everything is None, selection.everything
    size = len(the_map.to_json()) / 1e6
    print(f"wsgi_covguard impact benchmark: Django's source, {len(files)} files, {total:,}"
          f" statements; a map of {TESTS} tests ({size:.1f} MB); {changed} function bodies"
          f" changed; median of {ROUNDS}\n")  # fmt: skip
    print("| what | time | selected | goal |\n|---|---|---|---|")
    print(f"| read the map + select the affected tests, {total:,} statements, {TESTS} tests "
          f"| {statistics.median(times):.2f} s | {chosen} of {TESTS} | ≤ 1 s |")  # fmt: skip
    print(f"| record the map at the end of the run (`record_files`: combine the data, read each"
          f" test's lines, hash the files, write), {TESTS} tests"
          f" | {statistics.median(recording):.2f} s | | report it |")  # fmt: skip
    return 0


def record_times(root: Path, tests: dict[str, dict[str, list[int]]]) -> list[float]:
    """Seconds to record the map from a parallel data file holding these tests' lines under
    per-test contexts, as a contexts run ends (median of the rounds)."""
    data_file = root.parent / f"{root.name}-data" / ".coverage.host.pid1.Xbenchx"
    data_file.parent.mkdir()
    data = CoverageData(basename=str(data_file))
    for test, ran in tests.items():
        data.set_context(f"{test}|run")
        data.add_lines({str(root / path): lines for path, lines in ran.items()})
    data.write()
    data.close(force=True)
    times = []
    for _ in range(3):
        began = time.perf_counter()
        impact.record_files([data_file], root, test_root=root).write(data_file.parent / "map")
        times.append(time.perf_counter() - began)
    return times


if __name__ == "__main__":
    sys.exit(main())
