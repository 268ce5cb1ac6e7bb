from django.apps import AppConfig


class AuditConfig(AppConfig):
    name = "citycard.platform.audit"
    label = "audit"
    verbose_name = "Audit log"
