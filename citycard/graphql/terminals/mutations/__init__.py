"""No terminal mutations for partner apps: terminals are registered by the tenant (CLI, admin)."""
