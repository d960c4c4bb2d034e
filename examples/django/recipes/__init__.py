"""Recipes: a small Django project to measure end to end (routes, a form, templates, JSON)."""
