"""A portrait prepared for rendering: landmarks, aligned crop, rig and renderer, found once."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from tmcli.core.config import Preset
from tmcli.core.images import load_image
from tmcli.face.align import Alignment, Compositor, align_face, crop_image, uint8_frame
from tmcli.face.landmarks import Face, find_face
from tmcli.face.rig import FaceRig
from tmcli.motion.warp import MeshWarpRenderer

MIN_RENDER_SIZE = 192  # smallest crop the warp works at: lips stay several pixels thick


@dataclass
class Portrait:
    image: np.ndarray  # H x W x 3 uint8, the whole picture
    face: Face
    alignment: Alignment
    rig: FaceRig
    renderer: MeshWarpRenderer
    compositor: Compositor | None  # None when writing the crop alone

    @classmethod
    def load(
        cls, path: str | Path, preset: Preset, face_index: int = 0, device: torch.device | str = "cpu"
    ) -> "Portrait":
        """Landmarks, crop and warp set up once; frames are then rendered on `device`."""
        image = load_image(path)
        face = find_face(image, face_index, name=str(path))
        alignment = align_face(face.landmarks, preset.output.size)
        if not preset.output.crop and alignment.scale > 1:
            # pasted back at the portrait's own resolution, a larger crop adds no detail, only work
            size = max(MIN_RENDER_SIZE, 2 * int(np.ceil(preset.output.size / alignment.scale / 2)))
            alignment = align_face(face.landmarks, min(size, preset.output.size))
        landmarks = alignment.to_crop(face.landmarks)
        crop = crop_image(image, alignment)
        renderer = MeshWarpRenderer(crop, landmarks, preset.warp, device)
        compositor = None if preset.output.crop else Compositor(image, alignment, device)
        return cls(image, face, alignment, FaceRig(landmarks), renderer, compositor)

    @property
    def frame_size(self) -> tuple[int, int]:
        """(width, height) of the frames this portrait renders to."""
        if self.compositor is None:
            return self.alignment.size, self.alignment.size
        return self.compositor.width, self.compositor.height

    def frame_tensor(self, motion: np.ndarray) -> torch.Tensor:
        """One frame, H x W x 3 uint8 on the renderer's device (the runtime copies it to the host)."""
        crop = self.renderer(self.rig.apply(motion))
        return uint8_frame(crop) if self.compositor is None else self.compositor(crop)

    def render_frame(self, motion: np.ndarray) -> np.ndarray:
        return self.frame_tensor(motion).cpu().numpy()
