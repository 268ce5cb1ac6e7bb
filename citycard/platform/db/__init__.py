"""Database backend: django-tenants' PostgreSQL backend, plus the embedded server when configured."""
