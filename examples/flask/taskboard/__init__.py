"""Taskboard: a small Flask app to measure end to end (routes, a form, templates, JSON)."""

from __future__ import annotations

from typing import Any

from flask import Flask, abort, jsonify, redirect, render_template, request, url_for

from .store import TaskStore, ValidationError


def create_app(store: TaskStore | None = None) -> Flask:
    """Build the application; each call gets its own in-memory store."""
    app = Flask(__name__)
    tasks = store or TaskStore()

    @app.get("/")
    def index() -> str:
        return render_template("index.html", tasks=tasks.all(), errors=[], form={})

    @app.post("/tasks")
    def create_task() -> Any:
        form = request.form
        try:
            task = tasks.add(form.get("title", ""), form.get("priority", "normal"))
        except ValidationError as exc:
            page = render_template("index.html", tasks=tasks.all(), errors=exc.errors, form=form)
            return page, 400
        return redirect(url_for("show_task", task_id=task.id))

    @app.get("/tasks/<int:task_id>")
    def show_task(task_id: int) -> str:
        task = tasks.get(task_id)
        if task is None:
            abort(404)
        return render_template("task.html", task=task)

    @app.post("/tasks/<int:task_id>/done")
    def complete_task(task_id: int) -> Any:
        if not tasks.complete(task_id):
            abort(404)
        return redirect(url_for("index"))

    @app.get("/api/tasks")
    def api_tasks() -> Any:
        return jsonify([task.as_dict() for task in tasks.all()])

    @app.errorhandler(404)
    def not_found(error: Exception) -> tuple[str, int]:
        return render_template("error.html", message="No such page or task."), 404

    return app
