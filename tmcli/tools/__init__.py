"""Tools over the core: bench, export, evaluate."""
