"""Cardholders on the tenant endpoint: verification (yes/no, never the ID number), rider categories and the
concessions they give. Every read is logged against the caller."""
