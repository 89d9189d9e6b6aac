from __future__ import annotations

from django.urls import path

from tests.django_integration.project import api, views

urlpatterns = [
    path("reports", views.reports),
    path("plan-data", views.plan_data),
    path("search", views.search),
    path("both", views.both),
    path("stacked", views.stacked),
    path("broken-key", views.broken_key),
    path("async-search", views.async_search),
    path("profile", views.Profile.as_view()),
    path("settings", views.Settings.as_view()),
    path("health", views.health),
    path("login", views.login_view),
    path("api/me", api.Me.as_view()),
    path("api/plan", api.PlanData.as_view()),
    path("api/burst", api.Burst.as_view()),
    path("api/only-burst", api.OnlyBurst.as_view()),
    path("drf/builtin", api.Builtin.as_view()),
]
