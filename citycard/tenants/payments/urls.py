"""/payments/ on every tenant's site (mounted by citycard.platform.urls)."""

from django.urls import path

from citycard.tenants.payments import views

app_name = "payments"
urlpatterns = [
    path("notify/<slug:channel_code>", views.notify, name="notify"),
    path("reconciliation/", views.reconciliation, name="reconciliation"),
    path("reconciliation/<int:difference_id>/resolve", views.resolve, name="resolve"),
    path("suspense/<int:item_id>/match", views.suspense_match, name="suspense_match"),
    path("suspense/<int:item_id>/refund", views.suspense_refund, name="suspense_refund"),
]
