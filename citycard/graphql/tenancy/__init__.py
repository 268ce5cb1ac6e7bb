"""Tenants (cities, counties) and roaming networks on the platform endpoint."""
