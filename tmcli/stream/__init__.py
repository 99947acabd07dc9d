"""The streaming core: generators, sources of motion, the render pipeline, remote generators,
batches, exported graphs."""
