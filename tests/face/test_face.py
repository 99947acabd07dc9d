import importlib.util

import numpy as np
import pytest
from PIL import Image

from tmcli.core.errors import NoFaceError
from tmcli.face import landmarks as L
from tmcli.face.align import EYE_SPAN, align_face
from tmcli.face.rig import BLENDSHAPES, CHANNELS, INDEX, MOTION_DIM, REST_GAP, FaceRig, neutral

from conftest import SAMPLES


@pytest.fixture(scope="module")
def face(portrait_image):
    return L.find_face(portrait_image)


def test_landmarks_land_on_the_astronauts_face(face):
    lm = face.landmarks
    assert lm.shape == (L.NUM_LANDMARKS, 3)
    right, left = lm[L.RIGHT_IRIS[0], :2], lm[L.LEFT_IRIS[0], :2]
    assert 190 < right[0] < 215 and 235 < left[0] < 260 and 90 < right[1] < 115  # measured by eye
    assert lm[L.CHIN, 1] > lm[13, 1] > lm[L.NOSE_TIP, 1] > right[1]


def test_tiny_and_face_filling_portraits(portrait_image, face):
    x0, y0, x1, y1 = (int(v) for v in face.box)
    tight = portrait_image[y0 - 5 : y1 + 5, x0 - 5 : x1 + 5]  # the face fills the frame
    assert L.find_face(tight).landmarks.shape[0] == L.NUM_LANDMARKS
    tiny = np.asarray(Image.fromarray(portrait_image[40:260, 120:340]).resize((112, 112)))
    small = L.find_face(tiny)
    assert L.interocular(small.landmarks) == pytest.approx(
        L.interocular(face.landmarks) * 112 / 220, rel=0.15
    )


def test_no_face_and_bad_index(portrait_image):
    with pytest.raises(NoFaceError, match="no face"):
        L.find_face(np.full((200, 200, 3), 127, np.uint8))
    with pytest.raises(NoFaceError, match="face-index 3"):
        L.find_face(portrait_image, face_index=3)


def test_two_faces_largest_first(portrait_image, face):
    x0, y0, x1, y1 = (int(v) for v in face.box)
    head = portrait_image[max(y0 - 60, 0) : y1 + 40, max(x0 - 50, 0) : x1 + 50]
    small = np.asarray(Image.fromarray(head).resize((head.shape[1] * 3 // 4, head.shape[0] * 3 // 4)))
    canvas = np.full((360, 640, 3), 200, np.uint8)
    canvas[20 : 20 + head.shape[0], 20 : 20 + head.shape[1]] = head
    canvas[60 : 60 + small.shape[0], 380 : 380 + small.shape[1]] = small
    faces = L.detect_faces(canvas)
    assert len(faces) == 2
    assert faces[0].landmarks[1, 0] < 300 < faces[1].landmarks[1, 0]


def test_alignment_levels_the_eyes(face):
    tilted = face.landmarks.copy()
    c, s = np.cos(0.3), np.sin(0.3)
    tilted[:, :2] = tilted[:, :2] @ np.array([[c, -s], [s, c]]).T + 40
    al = align_face(tilted, 256)
    crop = al.to_crop(tilted)
    right, left = (crop[33, :2] + crop[133, :2]) / 2, (crop[263, :2] + crop[362, :2]) / 2
    assert abs(right[1] - left[1]) < 1e-6
    assert np.linalg.norm(left - right) == pytest.approx(EYE_SPAN * 256)
    assert 0 < crop[:, :2].min() and crop[:, :2].max() < 256


def test_channels_are_named_once():
    assert len(set(CHANNELS)) == MOTION_DIM
    assert {"jawOpen", "mouthClose", "eyeBlinkLeft", "mouthSmileLeft", "browInnerUp"} <= set(BLENDSHAPES)


@pytest.fixture(scope="module")
def rig(face):
    return FaceRig(align_face(face.landmarks, 512).to_crop(face.landmarks))


def _with(**values):
    m = neutral(1)[0]
    for k, v in values.items():
        m[INDEX[k]] = v
    return m


def test_neutral_motion_is_the_identity(rig):
    assert np.allclose(rig.apply(neutral(1)[0]), rig.source)  # her smile is within REST_GAP


def test_a_mouth_caught_open_rests_nearly_closed(rig):
    talking = rig.source.copy()
    talking[L.LIPS_LOWER_INNER + L.LIPS_LOWER_OUTER, 1] += 0.3 * rig.unit  # lips 0.46 u apart
    rested = FaceRig(talking).apply(neutral(1)[0])
    assert (rested[14, 1] - rested[13, 1]) / rig.unit == pytest.approx(REST_GAP)
    assert np.allclose(rested[L.FACE_OVAL], talking[L.FACE_OVAL])  # only the lips move


def test_jaw_drops_the_lower_lip_and_chin_only(rig):
    moved = rig.apply(_with(jawOpen=0.5)) - rig.source
    assert moved[14, 1] > 0.2 * rig.unit and moved[L.CHIN, 1] > 0.2 * rig.unit
    assert abs(moved[13, 1]) < 0.02 * rig.unit and np.abs(moved[L.RIGHT_EYE_UPPER]).max() < 1e-9


def test_mouth_close_shuts_the_smiling_mouth(rig):
    gap = lambda lm: lm[L.LIPS_LOWER_INNER, 1] - lm[L.LIPS_UPPER_INNER, 1]  # noqa: E731
    assert gap(rig.source).max() > 0.1 * rig.unit  # the astronaut shows her teeth
    assert np.abs(gap(rig.apply(_with(mouthClose=1.0)))).max() < 1e-6
    assert np.abs(gap(rig.apply(_with(mouthClose=1.0, jawOpen=0.4)))).max() < 1e-6  # despite the jaw


def test_blink_brings_the_upper_lid_down(rig):
    lm = rig.apply(_with(eyeBlinkLeft=1.0))
    lid, low = lm[386, 1], lm[374, 1]
    assert abs(lid - low) < 0.2 * (rig.source[374, 1] - rig.source[386, 1])
    assert np.allclose(lm[L.RIGHT_EYE_UPPER], rig.source[L.RIGHT_EYE_UPPER])  # the other eye stays open


def test_head_pose_moves_the_face_rigidly(rig):
    yawed = rig.apply(_with(headYaw=0.1))
    assert abs(yawed[L.NOSE_TIP, 0] - rig.source[L.NOSE_TIP, 0]) > 0.05 * rig.unit
    shifted = rig.apply(_with(headX=0.1))
    assert np.allclose(shifted[:, 0] - rig.source[:, 0], 0.1 * rig.unit)
    rolled = rig.apply(_with(headRoll=0.1))
    d = np.linalg.norm(rolled[[33, 263], :2] - rolled[[263, 33], :2], axis=1)
    assert np.allclose(d, np.linalg.norm(rig.source[33, :2] - rig.source[263, :2]))


GROUP = SAMPLES / "extra" / "group_6faces.jpg"


def _group_layout():
    """The heads the sample was made of (benchmarks/make_group_photo.py): face width and centre."""
    script = SAMPLES.parent / "benchmarks" / "make_group_photo.py"
    spec = importlib.util.spec_from_file_location("make_group_photo", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return [(width, centre) for *_, width, centre in module.HEADS]


@pytest.fixture(scope="module")
def group_faces():
    from tmcli.core.images import load_image

    return L.detect_faces(load_image(GROUP))


def test_every_face_of_the_group_photo_largest_first(group_faces):
    layout = _group_layout()
    assert len(group_faces) == len(layout)
    areas = [f.area for f in group_faces]
    assert areas == sorted(areas, reverse=True)
    for width, centre in layout:  # each head placed is found once, at its size, where it was put
        near = [
            f for f in group_faces if np.linalg.norm(f.landmarks[:, :2].mean(axis=0) - centre) < width / 2
        ]
        assert len(near) == 1
        x0, y0, x1, y1 = near[0].box
        assert x1 - x0 == pytest.approx(width, rel=0.15)
        assert (np.abs(near[0].landmarks[:, :2] - centre) < width).all()  # mapped back to the photo's pixels


def test_a_small_face_in_a_large_photo(portrait_image, face):
    """A portrait shrunk until its face is MIN_FACE pixels wide, in a blank 12-megapixel frame:
    too small for the mesh's own detector, found by the windowed one."""
    x0, y0, x1, y1 = face.box
    scale = L.MIN_FACE / (x1 - x0)
    small = np.asarray(Image.fromarray(portrait_image).resize((round(512 * scale),) * 2, Image.LANCZOS))
    canvas = np.full((3000, 4000, 3), 200, np.uint8)
    canvas[2000 : 2000 + small.shape[0], 2500 : 2500 + small.shape[1]] = small
    found = L.detect_faces(canvas)
    assert len(found) == 1
    assert found[0].size == pytest.approx(L.MIN_FACE * (y1 - y0) / (x1 - x0), rel=0.2)
    assert L.interocular(found[0].landmarks) == pytest.approx(L.interocular(face.landmarks) * scale, rel=0.15)


@pytest.mark.slow
def test_face_index_picks_each_face_of_the_group(group_faces):
    from tmcli.core.config import load_preset
    from tmcli.motion.portrait import Portrait

    preset = load_preset()
    boxes = [Portrait.load(GROUP, preset, face_index=i).face.box for i in range(len(group_faces))]
    np.testing.assert_allclose(boxes, [f.box for f in group_faces], rtol=1e-6)
    with pytest.raises(NoFaceError, match=f"face-index {len(group_faces)}.*has {len(group_faces)} face"):
        Portrait.load(GROUP, preset, face_index=len(group_faces))


def test_tracking_filters_below_the_nose_less_however_the_head_is_rolled(face):
    from tmcli.face.tracking import SMOOTH_CUTOFF, SPEECH_CUTOFF, cutoffs

    landmarks = face.landmarks
    centre = landmarks[:, :2].mean(axis=0)
    rolled = landmarks.copy()  # lying on its side: "below the nose" is to the left in the image
    rolled[:, :2] = (landmarks[:, :2] - centre) @ np.array([[0.0, 1.0], [-1.0, 0.0]]) + centre
    for points in (landmarks, rolled):
        per_point = cutoffs(points).reshape(-1, 3)[:, 0]
        chin, forehead = [152], [10]
        assert (per_point[L.LIPS_UPPER_OUTER + L.LIPS_LOWER_OUTER + chin] == SPEECH_CUTOFF).all()
        assert (per_point[L.RIGHT_EYE_UPPER + L.LEFT_BROW + forehead] == SMOOTH_CUTOFF).all()
