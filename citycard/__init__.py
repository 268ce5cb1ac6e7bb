"""CityCard Interop: citizen-card systems of many cities and counties, and the clearing between them."""

__version__ = "0.1.0"
