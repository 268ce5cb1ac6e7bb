"""No account mutations: keys are issued and revoked by the tenant's administrator (CLI, admin)."""
