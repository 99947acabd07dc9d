"""A video frame's mouth re-made (motion/dubbing.py), and the per-frame spline it warps with."""

import numpy as np
import pytest
import torch

from tmcli.core.config import WarpSettings
from tmcli.face import landmarks as L
from tmcli.face.rig import ARTICULATION, INDEX
from tmcli.motion.dubbing import (
    JAW_BEYOND,
    LIP_COLUMNS,
    MouthDub,
    changed_below,
    contact_line,
    crop_frame,
    jaw_to_gap,
    lip_edges_inside,
    lips_apart,
)
from tmcli.motion.fields import FrameSpline
from tmcli.tools.evaluate import CLOSED, OPEN, mouth_aperture


@pytest.fixture(scope="module")
def frame(portrait_image):
    return portrait_image, L.find_face(portrait_image).landmarks


@pytest.fixture(scope="module")
def dub(frame):
    return MouthDub(*frame)


def _spoken(own: np.ndarray, **values) -> np.ndarray:
    motion = own.copy()
    for name in ARTICULATION:
        motion[INDEX[name]] = 0.0
    for name, value in values.items():
        motion[INDEX[name]] = value
    return motion


def test_above_the_nose_the_frame_is_its_own_bytes(frame, dub):
    image, landmarks = frame
    out = dub(dub.prepare(image, landmarks), _spoken(np.zeros(len(INDEX)), jawOpen=0.7)).numpy()
    nose = int(landmarks[L.NOSE_TIP, 1])
    assert out.shape == image.shape
    np.testing.assert_array_equal(out[:nose], image[:nose])
    mouth = slice(int(landmarks[13, 1]) - 20, int(landmarks[14, 1]) + 40)
    assert np.abs(out[mouth].astype(int) - image[mouth]).mean() > 2  # the jaw dropped


def test_the_frame_own_motion_changes_almost_nothing(frame, dub):
    image, landmarks = frame
    prepared = dub.prepare(image, landmarks)
    out = dub(prepared, prepared.own).numpy()
    assert np.abs(out.astype(int) - image).mean() < 0.5


def test_speech_closes_and_opens_the_mouth_as_the_face_mesh_sees_it(frame, dub):
    image, landmarks = frame
    assert mouth_aperture(landmarks) > OPEN  # the astronaut shows her teeth
    prepared = dub.prepare(image, landmarks)
    closed = dub(prepared, _spoken(prepared.own, mouthClose=1.0)).numpy()
    assert mouth_aperture(L.find_face(closed).landmarks) < CLOSED
    opened = dub(prepared, _spoken(prepared.own, jawOpen=0.8)).numpy()
    assert mouth_aperture(L.find_face(opened).landmarks) > mouth_aperture(landmarks) + 0.05


def test_lips_apart_gives_the_rig_gap_and_keeps_the_lips_thickness():
    rng = np.random.default_rng(0)
    deformed, posed = rng.normal(size=(478, 3)) * 5, rng.normal(size=(478, 3)) * 5
    out = lips_apart(deformed, posed)
    for up_in, up_out, lo_in, lo_out in zip(*LIP_COLUMNS):
        if up_in == lo_in:
            continue
        assert out[lo_in, 1] - out[up_in, 1] == pytest.approx(max(posed[lo_in, 1] - posed[up_in, 1], 0.0))
        assert out[up_in, 1] - out[up_out, 1] == pytest.approx(deformed[up_in, 1] - deformed[up_out, 1])
        assert out[lo_out, 1] - out[lo_in, 1] == pytest.approx(deformed[lo_out, 1] - deformed[lo_in, 1])
    others = np.setdiff1d(np.arange(478), np.concatenate(LIP_COLUMNS))
    np.testing.assert_array_equal(out[others], deformed[others])


def test_a_gap_the_rig_cannot_explain_moves_the_jaw_by_half(frame, dub):
    image, landmarks = frame
    posed = dub.prepare(image, landmarks).posed
    deformed = posed.copy()
    lower = L.LIPS_LOWER_INNER[1:-1]
    unit = dub.rig.unit
    extra = (JAW_BEYOND + 0.2) * unit  # the inner lips this much further apart than the rig says
    deformed[lower, 1] += extra
    out = jaw_to_gap(deformed, posed, dub.jaw, unit)
    assert out[14, 1] == pytest.approx(deformed[14, 1] - 0.1 * unit)  # half of what is beyond JAW_BEYOND
    assert deformed[152, 1] - out[152, 1] > 0.08 * unit  # the chin comes up with it
    assert abs(out[10, 1] - deformed[10, 1]) < 1e-9  # the forehead does not move
    small = posed.copy()
    small[lower, 1] += 0.5 * JAW_BEYOND * unit  # a small misfit stays the lips' (lips_apart)
    np.testing.assert_allclose(jaw_to_gap(small, posed, dub.jaw, unit), small)


def test_lip_edges_move_into_parted_lips_only():
    landmarks = np.zeros((478, 3))
    up, lo = L.LIPS_UPPER_INNER[1:-1], L.LIPS_LOWER_INNER[1:-1]
    landmarks[lo, 1] = 10.0  # parted by 10 px, unit 100: LIP_EDGE = 2.5 px
    out = lip_edges_inside(landmarks, 100.0)
    assert (out[up, 1] < 0).all() and (out[lo, 1] > 10).all()
    landmarks[lo, 1] = 0.0  # lips that touch stay
    np.testing.assert_array_equal(lip_edges_inside(landmarks, 100.0), landmarks)


def _lips(gap: float) -> np.ndarray:
    """Landmarks whose inner lips run level from x 20 to 80, `gap` px apart about row 50."""
    landmarks = np.zeros((478, 3))
    for contour, row in ((L.LIPS_UPPER_INNER, 50 - gap / 2), (L.LIPS_LOWER_INNER, 50 + gap / 2)):
        landmarks[contour, 0] = np.linspace(20, 80, len(contour))
        landmarks[contour, 1] = row
    return landmarks


def test_contact_line_darkens_where_the_warp_shut_lips_the_source_had_apart():
    crop = torch.full((1, 3, 100, 100), 0.6)
    shaded = crop.clone()
    contact_line(shaded, _lips(0.0), _lips(12.0), unit=100.0)  # shut, from a mouth 0.12 u open
    assert float(shaded[0, 0, 50, 50]) < 0.6 * 0.6  # the middle of the line: CONTACT_DARK
    assert float(shaded[0, 0, 45, 50]) == pytest.approx(0.6, abs=1e-3)  # thin: half-width 1.2 px
    assert float(shaded[0, 0, 50, 21]) > float(shaded[0, 0, 50, 50])  # fading at the corners
    assert float(shaded[0, :, :, :19].min()) == pytest.approx(0.6)  # nothing beyond the corners
    for deformed, source in ((_lips(0.0), _lips(1.0)), (_lips(12.0), _lips(12.0))):
        unchanged = crop.clone()  # shut in the source too (its own line), or not shut by the warp
        contact_line(unchanged, deformed, source, unit=100.0)
        torch.testing.assert_close(unchanged, crop)


def test_change_mask_is_zero_above_the_nose_and_where_nothing_moved():
    crop = torch.rand(1, 3, 128, 128)
    warped = crop.clone()
    warped[:, :, 90:100, 60:70] += 0.5
    mask = changed_below(crop, warped, nose_y=60.0, unit=32.0)
    assert float(mask[0, 0, :60].max()) == 0.0
    assert float(mask[0, 0, 95, 65]) > 0.9
    assert float(mask[0, 0, 120, 5]) == 0.0
    assert float(changed_below(crop, crop.clone(), 60.0, 32.0).max()) == 0.0
    edge = crop.clone()
    edge[:, :, 120:, :] += 0.5  # a change at the crop's bottom edge: faded out there, no seam
    assert float(changed_below(crop, edge, 60.0, 32.0)[0, 0, 127].max()) == 0.0


def test_crop_frame_matches_the_portrait_crop(frame):
    from tmcli.face.align import align_face, crop_image, image_to_tensor

    image, landmarks = frame
    alignment = align_face(landmarks, 512)
    assert alignment.scale > 0.9  # crop_image shrinks first below this
    ours = crop_frame(image_to_tensor(image), alignment)
    assert (ours - crop_image(image, alignment)).abs().max() < 1e-3


def test_frame_spline_passes_through_the_moving_landmarks_and_is_still_above():
    rng = np.random.default_rng(1)
    size, g = 256, 32
    source = rng.uniform(40, 216, size=(478, 2))
    moving = np.flatnonzero(source[:, 1] > 140)
    axis = np.linspace(0, size - 1, g) / size
    grid = np.stack([c.ravel() for c in np.meshgrid(axis, axis)], axis=1)
    anchors = np.array([[0, 0], [255, 0], [0, 255], [255, 255]], dtype=float)
    settings = WarpSettings(field_resolution=g)
    spline = FrameSpline(source, moving, moving[::2], anchors, grid, size, settings, from_row=100.0)
    displacement = np.zeros((478, 2))
    displacement[moving] = 3.0 * np.sin(source[moving] / 30.0)
    field = spline.field(torch.as_tensor(displacement, dtype=torch.float32)).numpy()
    assert np.abs(field.reshape(-1, 2)[grid[:, 1] * size < 100]).max() == 0.0
    assert np.abs(spline.field(torch.zeros(478, 2)).numpy()).max() < 1e-5
    # the field's value at a moving landmark: bilinear on the coarse grid, so near it, not on it
    at = torch.nn.functional.grid_sample(
        torch.as_tensor(field).permute(2, 0, 1)[None],
        torch.as_tensor(source[moving] / (size - 1) * 2 - 1, dtype=torch.float32)[None, None],
        align_corners=True,
    )[0, :, 0].T.numpy()
    assert np.median(np.abs(at - displacement[moving])) < 0.5


def test_the_bank_lays_the_video_own_interior_where_the_mouth_opens_wider(frame):
    from tmcli.face.align import align_face, crop_image
    from tmcli.face.fitting import lip_gap
    from tmcli.motion.interior import InteriorBank

    image, landmarks = frame
    alignment = align_face(landmarks, 256)
    crop, points = crop_image(image, alignment), alignment.to_crop(landmarks)
    unit = L.interocular(points)
    bank = InteriorBank()
    bank.add(crop, points)  # the astronaut's open smile: her own teeth
    assert len(bank.entries) == 1
    grey = torch.full_like(crop, 0.5)
    lips = torch.full((3, 1, 1), 0.5)
    wider = points.copy()
    wider[L.LIPS_LOWER_INNER[1:-1] + L.LIPS_LOWER_OUTER, 1] += 0.06 * unit
    same = grey.clone()
    bank.fill(same, wider, lip_gap(wider), lips)  # no wider than its own frame
    assert torch.equal(same, grey)
    filled = grey.clone()
    bank.fill(filled, wider, lip_gap(points), lips)
    changed = (filled - grey).abs().amax(dim=1)[0] > 0.02
    rows, cols = torch.nonzero(changed, as_tuple=True)
    assert len(rows) > 50 and float((filled - grey).abs().max()) > 0.2  # teeth, not grey
    assert rows.min() >= int(points[L.LIPS_UPPER_INNER, 1].min()) - 1
    assert rows.max() <= int(wider[L.LIPS_LOWER_INNER, 1].max()) + 1
    assert cols.min() >= int(points[78, 0]) - 1 and cols.max() <= int(points[308, 0]) + 1


def test_the_bank_leaves_the_painted_interior_where_the_mouth_opens_far_wider_than_it_ever_did(frame):
    from tmcli.face.align import align_face, crop_image
    from tmcli.face.fitting import lip_gap
    from tmcli.motion.interior import STRETCH, InteriorBank

    image, landmarks = frame
    alignment = align_face(landmarks, 256)
    crop, points = crop_image(image, alignment), alignment.to_crop(landmarks)
    bank = InteriorBank()
    bank.add(crop, points)
    grey, lips = torch.full_like(crop, 0.5), torch.full((3, 1, 1), 0.5)
    filled = {}
    for stretch in (1.2, 1.6, STRETCH[1] + 0.2):  # the dub's gap over the bank's one opening
        wider = points.copy()
        extra = (stretch - 1) * lip_gap(points) * L.interocular(points)
        wider[L.LIPS_LOWER_INNER[1:-1] + L.LIPS_LOWER_OUTER, 1] += extra
        assert lip_gap(wider) / lip_gap(points) == pytest.approx(stretch, rel=0.1)
        out = grey.clone()
        bank.fill(out, wider, 0.0, lips)
        filled[stretch] = float((out - grey).abs().max())
    strong, faded, none = filled.values()
    assert strong > 0.2 and 0 < faded < strong and none == 0.0
