"""No loaders: a page of service points fetches its departments in the same query (select_related)."""
