"""No loaders: a page of payments fetches its runs and programmes in the same query and all its items in one
more (the selector's select_related and prefetch)."""
