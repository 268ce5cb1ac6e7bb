from django.urls import path

from citycard.tenants.terminals import views

urlpatterns = [path("terminal/v1/batches", views.batch_upload, name="terminal-batch-upload")]
