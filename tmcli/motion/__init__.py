"""The motion space: controls, the phonetic driver, MotionDiT and its causal student, the mesh-warp
renderer."""
