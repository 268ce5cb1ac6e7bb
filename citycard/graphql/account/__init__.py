"""Who is calling: the API key on the tenant endpoint, the platform user on the platform endpoint."""
