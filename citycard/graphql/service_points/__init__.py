"""Service points (服务网点) of this tenant on the tenant endpoint: search by department kind, service, text."""
