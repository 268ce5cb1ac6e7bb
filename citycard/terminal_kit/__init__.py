"""Terminal-side SDK. Imports nothing from Django or the other citycard packages."""
