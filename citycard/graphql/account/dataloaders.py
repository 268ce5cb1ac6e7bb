"""Nothing to batch: ``me`` is the request's own principal, loaded during authentication."""
