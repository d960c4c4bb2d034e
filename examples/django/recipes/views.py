"""The views: a list with a form, a detail page, a JSON API; 404s use templates/404.html."""

from __future__ import annotations

import threading
from typing import Any

from django import forms
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render

_recipes: list[dict[str, Any]] = []
_lock = threading.Lock()


class RecipeForm(forms.Form):
    name = forms.CharField(max_length=80, error_messages={"required": "A recipe needs a name."})
    minutes = forms.IntegerField(
        min_value=1,
        max_value=24 * 60,
        error_messages={"min_value": "Cooking takes at least a minute."},
    )


def home(request: HttpRequest) -> HttpResponse:
    form = RecipeForm(request.POST or None)
    if request.method == "POST":
        if form.is_valid():
            with _lock:
                recipe = {"id": len(_recipes) + 1, **form.cleaned_data}
                _recipes.append(recipe)
            return redirect("recipe", recipe_id=recipe["id"])
        return render(request, "recipes/home.html", {"form": form, "recipes": _recipes}, status=400)
    return render(request, "recipes/home.html", {"form": form, "recipes": _recipes})


def show(request: HttpRequest, recipe_id: int) -> HttpResponse:
    if not 1 <= recipe_id <= len(_recipes):
        raise Http404("No such recipe.")
    return render(request, "recipes/recipe.html", {"recipe": _recipes[recipe_id - 1]})


def api(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"recipes": _recipes})
