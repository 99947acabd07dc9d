"""Networks: the motion diffusion transformer."""
