"""Training: data streams and the teacher trainer."""
