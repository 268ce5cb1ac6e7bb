from django.urls import path

from citycard.tenants.exchange import views

urlpatterns = [path("terminal/v1/hotlist", views.hotlist_download, name="terminal-hotlist")]
