"""No loaders: a top-up order is read one at a time, with its channel in the same query."""
