from django.urls import path

from . import views

urlpatterns = [
    path("", views.home, name="home"),
    path("recipes/<int:recipe_id>", views.show, name="recipe"),
    path("api/recipes", views.api, name="api"),
]
