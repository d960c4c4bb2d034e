"""An in-memory task store with the validation rules of the form."""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass
from typing import Any

PRIORITIES = ("low", "normal", "high")
MAX_TITLE = 80


class ValidationError(Exception):
    def __init__(self, errors: list[str]) -> None:
        super().__init__("; ".join(errors))
        self.errors = errors


@dataclass
class Task:
    id: int
    title: str
    priority: str
    done: bool = False

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class TaskStore:
    def __init__(self) -> None:
        self._tasks: dict[int, Task] = {}
        self._lock = threading.Lock()

    def all(self) -> list[Task]:
        with self._lock:
            return sorted(self._tasks.values(), key=lambda task: (task.done, task.id))

    def get(self, task_id: int) -> Task | None:
        return self._tasks.get(task_id)

    def add(self, title: str, priority: str) -> Task:
        title = title.strip()
        errors = []
        if not title:
            errors.append("A title is required.")
        elif len(title) > MAX_TITLE:
            errors.append(f"The title must be at most {MAX_TITLE} characters.")
        if priority not in PRIORITIES:
            errors.append(f"Priority must be one of {', '.join(PRIORITIES)}.")
        if errors:
            raise ValidationError(errors)
        with self._lock:
            task = Task(id=len(self._tasks) + 1, title=title, priority=priority)
            self._tasks[task.id] = task
        return task

    def complete(self, task_id: int) -> bool:
        task = self._tasks.get(task_id)
        if task is None:
            return False
        task.done = True
        return True
