from django.urls import path

from citycard.tenants.entitlements import views

urlpatterns = [
    path("terminal/v1/entitlements", views.entitlement_list_download, name="terminal-entitlements"),
    path("terminal/v1/entitlement-uses", views.entitlement_uses_receive, name="terminal-entitlement-uses"),
]
