"""Faces: landmarks (mediapipe face mesh), the aligned crop, and the rig that poses landmarks from motion."""
