"""wordorder-tui: measure whether embedding models see word order."""

__version__ = "0.1.0"
