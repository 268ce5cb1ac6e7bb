"""/merchants/ on every tenant's site (mounted by citycard.platform.urls): merchant settlement pages."""

from django.urls import path

from citycard.tenants.merchants import views

app_name = "merchants"
urlpatterns = [
    path("settlement/", views.settlement_day, name="settlement"),
    path("settlement/payout/<str:day>/", views.payout_file, name="payout_file"),
    path("settlement/<slug:code>/<str:day>/", views.statement, name="statement"),
]
