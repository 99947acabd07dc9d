"""Training data: synthetic speech with known phone timings."""
