"""/console/ on the platform's site (mounted by citycard.platform.urls_public)."""

from django.urls import path

from citycard.interop.console import views

app_name = "console"
CYCLE = "cycles/<slug:network>/<slug:service>/<str:day>/"

urlpatterns = [
    path("", views.today, name="today"),
    path("charts/", views.charts, name="charts"),
    path(CYCLE, views.cycle_page, name="cycle"),
    path(f"{CYCLE}exceptions/", views.cycle_exceptions, name="cycle_exceptions"),
    path(f"{CYCLE}records/", views.cycle_records, name="cycle_records"),
    path(f"{CYCLE}files/<slug:participant>.csv", views.reconciliation_download, name="reconciliation_file"),
    path(f"{CYCLE}step/<slug:step>/", views.cycle_step, name="cycle_step"),
    path("records/<str:record_id>/", views.record_page, name="record"),
    path("records/<str:record_id>/dispute/", views.dispute_raise, name="dispute_raise"),
    path("disputes/", views.disputes, name="disputes"),
    path("disputes/<int:dispute_id>/", views.dispute_page, name="dispute"),
    path("disputes/<int:dispute_id>/resolve/", views.dispute_resolve, name="dispute_resolve"),
]
