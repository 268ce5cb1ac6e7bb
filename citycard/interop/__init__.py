"""Everything that crosses a tenant boundary: roaming agreements, signed messages, clearing."""
