"""tm: a portrait and speech become a lip-synced talking-head video."""

__version__ = "0.1.0"
