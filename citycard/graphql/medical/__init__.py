"""Cross-city medical claims (异地就医) of a treatment place's hospitals, on the tenant endpoint."""
