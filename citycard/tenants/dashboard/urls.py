"""/dashboard/ on every tenant's site (mounted by citycard.platform.urls)."""

from django.urls import path

from citycard.tenants.dashboard import views

app_name = "dashboard"
urlpatterns = [path("", views.dashboard, name="city")]
