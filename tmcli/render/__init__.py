"""Renderers: motion (deformed landmarks) -> image. The motion-space renderer is MeshWarpRenderer."""
