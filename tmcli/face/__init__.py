"""Faces: landmarks (mediapipe face mesh), the aligned crop, and the motion latent."""
