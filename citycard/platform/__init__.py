"""The Django project and the public schema: settings, URLs, the Celery app, tenants and domains,
roaming networks, users and roles, the audit log and the embedded PostgreSQL."""
