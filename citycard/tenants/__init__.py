"""Everything that lives inside one tenant's schema."""
