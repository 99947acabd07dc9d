import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from tmcli.face import landmarks as L
from tmcli.face.align import to_uint8
from tmcli.face.rig import INDEX, neutral
from tmcli.motion.fields import curve_index, curves_at, forward_field
from tmcli.motion.mouth import DEFAULT_TEETH, mouth_paint
from tmcli.motion.warp_graph import FixedShapeWarp
from tmcli.tools.evaluate import CLOSED, OPEN, mouth_aperture


def _motion(**values):
    m = neutral(1)[0]
    for k, v in values.items():
        m[INDEX[k]] = v
    return m


def _crop(portrait, **values):
    return portrait.renderer(portrait.rig.apply(_motion(**values)))


def _aperture_seen(frame: torch.Tensor) -> float:
    lm = L.detect_faces(to_uint8(frame))[0].landmarks
    return mouth_aperture(lm)


def test_neutral_motion_renders_the_portrait(portrait):
    diff = (_crop(portrait) - portrait.renderer.image).abs()
    assert diff.mean() < 0.004 and diff.max() < 0.25


def test_lips_close_and_open_as_the_face_mesh_sees_it(portrait):
    rest = _aperture_seen(portrait.renderer.image)
    assert rest > OPEN  # the astronaut smiles with her teeth showing
    assert _aperture_seen(_crop(portrait, mouthClose=1.0)) < CLOSED
    opened = _aperture_seen(_crop(portrait, jawOpen=0.6))
    assert opened > rest + 0.1


def test_blink_hides_the_iris(portrait):
    lm = portrait.rig.source
    cx, cy = (int(v) for v in lm[L.LEFT_IRIS[0], :2])
    r = int(0.05 * portrait.rig.unit)
    dark = lambda img: img[0, :, cy - r : cy + r, cx - r : cx + r].mean()  # noqa: E731
    assert dark(_crop(portrait, eyeBlinkLeft=1.0)) > dark(portrait.renderer.image) + 0.06


def _blink(portrait, amount: float) -> torch.Tensor:
    return _crop(portrait, eyeBlinkLeft=amount, eyeBlinkRight=amount)


def _eye_boxes(portrait, pad: float) -> torch.Tensor:
    """(S, S) bool: the eye regions' rings (crease to below the lower lid), `pad` interocular units wider."""
    lm, unit, size = portrait.rig.source, portrait.rig.unit, portrait.renderer.size
    inside = torch.zeros(size, size, dtype=torch.bool)
    for ring in (L.RIGHT_EYE_ABOVE + L.RIGHT_EYE_BELOW, L.LEFT_EYE_ABOVE + L.LEFT_EYE_BELOW):
        (x0, y0), (x1, y1) = lm[ring, :2].min(axis=0) - pad * unit, lm[ring, :2].max(axis=0) + pad * unit
        inside[max(int(y0), 0) : int(np.ceil(y1)) + 1, max(int(x0), 0) : int(np.ceil(x1)) + 1] = True
    return inside


def test_a_full_blink_closes_the_eyes_as_the_face_mesh_sees_it(portrait):
    """Blink depth as tm eval --reference reads it (1 - gap / open gap). The mesh reads a real
    full blink at ~0.8-0.9; this render's eyeBlink = 1 reads 0.72 on the astronaut's crop (0.70
    when the lid just met the lower lid as its stretched crease skin, ~0.5 when it was its thin
    margin band smeared over the eye; benchmarks/blink_depth.py); half a blink reads in between."""
    from tmcli.tools.face_series import eye_gap

    def gap(frame):
        return eye_gap(L.detect_faces(to_uint8(frame))[0].landmarks)

    rest = gap(_crop(portrait))
    half, full = 1 - gap(_blink(portrait, 0.5)) / rest, 1 - gap(_blink(portrait, 1.0)) / rest
    assert full >= 0.71
    assert 0.1 < half < full - 0.2


def _luma(frame: torch.Tensor) -> np.ndarray:
    return (frame[0] * torch.tensor([0.299, 0.587, 0.114])[:, None, None]).sum(0).numpy()


def test_a_full_blink_leaves_nothing_of_the_eye_showing(portrait):
    """Over the upper half of each eye's opening (the portrait's lids), a full blink shows lid:
    no pixel as dark as the iris is at rest (the lid's margin and lashes lie lower, where the
    lids meet; the corners' shadows are left out); half a blink still shows some."""
    lm, size = portrait.rig.source, portrait.renderer.size
    rest, half, full = (_luma(_blink(portrait, a)) for a in (0.0, 0.5, 1.0))
    rows, cols = np.mgrid[:size, :size]
    for upper, lower, iris in (
        (L.RIGHT_EYE_UPPER, L.RIGHT_EYE_LOWER, L.RIGHT_IRIS),
        (L.LEFT_EYE_UPPER, L.LEFT_EYE_LOWER, L.LEFT_IRIS),
    ):
        top = np.interp(cols, *lm[upper, :2].T)
        bottom = np.interp(cols, *lm[lower, :2].T)
        left, right = lm[upper, 0].min(), lm[upper, 0].max()
        across = (cols > left + 0.1 * (right - left)) & (cols < right - 0.1 * (right - left))
        opening_top = across & (rows >= top) & (rows <= (top + bottom) / 2)
        centre = lm[iris[0], :2]
        radius = np.linalg.norm(lm[iris[1:], :2] - centre, axis=1).mean()
        disk = (
            ((cols - centre[0]) ** 2 + (rows - centre[1]) ** 2 <= radius**2)
            & (rows >= top)
            & (rows <= bottom)
        )
        dark = np.median(rest[disk])  # the iris and pupil at rest
        assert (rest[opening_top] <= dark).mean() > 0.2  # the eye is open at rest
        assert (half[opening_top] <= dark).mean() > 0.02
        assert (full[opening_top] <= dark).mean() == 0


def test_no_blink_leaves_the_eyes_as_in_the_portrait(portrait):
    eyes = _eye_boxes(portrait, 0.0)
    diff = (_blink(portrait, 0.0) - portrait.renderer.image)[0, :, eyes].abs()
    assert diff.max() < 1e-3


def test_a_blink_changes_nothing_outside_the_eyes(portrait):
    near = _eye_boxes(portrait, 0.1)  # the crease ring moves down, the smooth warp follows a little
    change = (_blink(portrait, 1.0) - _crop(portrait))[0].abs().amax(dim=0)
    assert change[~near].max() < 0.02
    assert change[near].max() > 0.3  # and the eyes did close


def test_head_motion_leaves_the_crop_border_alone(portrait):
    frame = _crop(portrait, headYaw=0.12, headPitch=0.08, headRoll=0.05, jawOpen=0.4)
    edge = max(2, portrait.renderer.size // 128)  # the outermost ~1% of the crop
    border = torch.ones_like(frame[0, 0], dtype=torch.bool)
    border[edge:-edge, edge:-edge] = False
    change = (frame - portrait.renderer.image)[0, :, border].abs()
    assert change.mean() < 0.002 and change.max() < 0.06  # fixed anchors; the feathered paste hides the rest
    # and the face did move
    assert (frame - portrait.renderer.image).abs().mean() > 0.01


def test_paste_back_has_no_seam(portrait, portrait_image):
    full = portrait.compositor(_crop(portrait, headYaw=0.1, jawOpen=0.3)).numpy()
    assert full.shape == portrait_image.shape
    comp = portrait.compositor
    outside = np.ones(full.shape[:2], bool)
    outside[comp.y0 : comp.y1, comp.x0 : comp.x1] = False
    assert np.array_equal(full[outside], portrait_image[outside])
    ring = np.zeros(full.shape[:2], bool)  # just inside the pasted region's edge
    ring[comp.y0 : comp.y1, comp.x0 : comp.x0 + 3] = True
    ring[comp.y0 : comp.y1, comp.x1 - 3 : comp.x1] = True
    assert np.abs(full[ring].astype(int) - portrait_image[ring]).mean() < 2


def test_render_is_deterministic(portrait):
    a, b = _crop(portrait, jawOpen=0.3, gazeX=0.5), _crop(portrait, jawOpen=0.3, gazeX=0.5)
    assert torch.equal(a, b)


def test_motion_outside_a_faces_range_is_clamped_not_a_crash(portrait):
    from tmcli.face.rig import LOWER, MOTION_DIM, UPPER

    wild = portrait.render_frame(np.full(MOTION_DIM, 50.0))
    at_limit = portrait.render_frame(UPPER)
    np.testing.assert_array_equal(wild, at_limit)  # clamped to the same face
    np.testing.assert_array_equal(
        portrait.render_frame(np.full(MOTION_DIM, -50.0)), portrait.render_frame(LOWER)
    )
    broken = portrait.render_frame(np.full(MOTION_DIM, np.nan))
    assert broken.shape == wild.shape and broken.dtype == np.uint8


class _HostTensors(TorchDispatchMode):
    """Records every tensor made from host data (a Python list or number turned into a tensor)."""

    def __init__(self):
        super().__init__()
        self.made = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.made += func is torch.ops.aten.lift_fresh.default
        return func(*args, **(kwargs or {}))


@pytest.fixture(scope="module")
def closed_mouth():
    """A sample portrait whose mouth is closed: the renderer paints all of the interior, teeth too."""
    from tmcli.core.config import load_preset
    from tmcli.motion.portrait import Portrait

    from conftest import SAMPLES

    return Portrait.load(SAMPLES / "extra" / "fr_biden.jpg", load_preset())


@pytest.mark.parametrize("which", ["portrait", "closed_mouth"])
def test_the_fixed_shape_warp_matches_the_renderer_and_copies_nothing_from_the_host(which, request):
    """GraphedWarp captures FixedShapeWarp as a CUDA graph: a tensor made from host data inside
    its forward (a list index, a colour constant) would be a host-to-device copy, which a graph
    cannot capture. The test runs on the CPU, where such tensors show as lift_fresh. The
    astronaut shows her own teeth; the closed mouth has all of its interior painted."""
    portrait = request.getfixturevalue(which)
    renderer = portrait.renderer
    assert renderer.own_teeth == (which == "portrait")
    warp = FixedShapeWarp(renderer)
    inputs = FixedShapeWarp.portrait_inputs(renderer)
    for values in (
        {"jawOpen": 0.6},
        {"mouthClose": 0.8, "headYaw": 0.3},
        {"mouthSmileLeft": 0.5, "jawOpen": 0.3},
        {},
    ):
        landmarks = portrait.rig.apply(_motion(**values))
        pose = torch.as_tensor(landmarks, dtype=torch.float32)
        recorder = _HostTensors()
        with torch.no_grad(), recorder:
            fixed = warp(pose, *inputs)
        assert recorder.made == 0
        eager = renderer(landmarks)
        assert (fixed - eager).abs().max() < 1e-3


def test_a_closed_mouth_opens_onto_teeth_tongue_and_shade_not_a_black_hole():
    """A mouth closed in the portrait opened 0.3 interocular units (512 px crop): inside, almost
    nothing near-black (the flat cavity was), a band of teeth-like pixels under the upper lip with
    separate teeth (brightness dips along the row, not a picket fence), a tongue redder than the
    teeth low in the opening."""
    unit, cols = 128.0, torch.arange(0, 121, dtype=torch.float32)
    rest = torch.tensor([80.0, 92, 100, 100, 108, 120])  # above-lip ring .. below-lip ring, rows
    knots_in = rest.expand(len(cols), 6).clone()
    knots = knots_in.clone()
    knots[:, 3:] += 0.3 * unit * (1 - ((cols - 60) / 60) ** 2).clamp(min=0).sqrt()[:, None]  # the jaw drops
    rows = torch.arange(90, 150, dtype=torch.float32)[:, None]
    teeth, lips = torch.tensor(DEFAULT_TEETH).view(3, 1, 1), torch.tensor([0.7, 0.35, 0.33]).view(3, 1, 1)
    alpha, paint = mouth_paint(
        rows, cols, knots, knots_in, torch.tensor([0.0, 120.0]), unit, teeth, lips, False
    )
    inside = alpha > 0.99
    value, low = paint.amax(dim=0), paint.amin(dim=0)
    assert (value[inside] < 0.15).float().mean() < 0.03
    teeth_like = (value > 0.55) & ((value - low) / value < 0.35)
    assert 0.15 < teeth_like[inside].float().mean() < 0.7
    row = paint[:, 104 - 90, 40:81].mean(dim=0)  # across the upper front teeth, 4 px below the lip
    assert teeth_like[104 - 90, 40:81].all() and 0.75 < row.min() / row.max() < 0.95
    tongue = paint[:, 128 - 90, 55:66]  # low in the opening (above the lower teeth), mid-mouth
    assert (tongue[0] > 1.3 * tongue[1]).all() and not teeth_like[128 - 90, 55:66].any()


def _inverse_error(renderer, deformed: np.ndarray) -> float:
    """Worst |y - (x + f(x))| in pixels over the coarse grid points y whose pre-image x = y + b(y)
    lies inside the crop: how far the backward warp misses inverting the forward one."""
    forward = renderer._forward_field(np.asarray(deformed, dtype=np.float64)[:, :2])
    back = renderer._backward_field(forward)
    x = renderer.coarse_pixels + back
    inside = ((x >= 0) & (x <= renderer.size - 1)).all(dim=-1)
    return float((back + renderer._sample(forward, x)).norm(dim=-1)[inside].max())


def test_the_smooth_warp_is_inverted_where_the_jaw_stretches_the_chin(portrait):
    # the chin moves twice as far as the lower lip: plain fixed-point steps diverge there
    # (40 px on a wide opening) and the lower lip showed its own edge twice
    deformed = portrait.rig.apply(_motion(jawOpen=0.8, mouthLowerDownLeft=0.5, mouthLowerDownRight=0.5))
    assert _inverse_error(portrait.renderer, deformed) < 3.0


def test_lip_points_come_near_their_own_columns_before_the_remap(portrait):
    # the column remap moves lips along columns only, so the smooth warp should bring each lip
    # point to its deformed x; through the control points alone a rounding mouth's lip points
    # missed by 6 px (mean) and an open mouth's own gap showed beside its corners
    r = portrait.renderer
    deformed = portrait.rig.apply(_motion(jawOpen=0.3, mouthFunnel=0.8, mouthPucker=0.8))[:, :2]
    lips = L.LIPS_UPPER_OUTER + L.LIPS_UPPER_INNER + L.LIPS_LOWER_INNER + L.LIPS_LOWER_OUTER
    source = r._tensor(r.source[lips])

    def miss(field_matrix):
        forward = forward_field(field_matrix, r._tensor(deformed - r.source), r.settings.field_resolution)
        return np.abs((source + r._sample(forward, source))[:, 0].numpy() - deformed[lips, 0]).mean()

    controls_only = torch.stack([r.field_matrix[1], r.field_matrix[1]])
    assert np.abs(r.source[lips, 0] - deformed[lips, 0]).max() > 3  # the pose does move them sideways
    assert miss(r.field_matrix) < 0.6 * miss(controls_only)
    assert miss(r.field_matrix) < 4.0


def test_curves_of_different_lengths_are_read_as_np_interp_does():
    rng = np.random.default_rng(0)
    points = rng.uniform(0, 100, size=(12, 2))
    curves = [[0, 1, 2, 3, 4], [5, 6, 7], [8, 9, 10, 11]]
    columns = torch.linspace(-5, 105, 23, dtype=torch.float64)
    got = curves_at(columns, torch.from_numpy(points)[None], curve_index(curves))[0].numpy()  # (C, K)
    want, above = [], None
    for curve in curves:
        order = np.argsort(points[curve, 0])
        y = np.interp(columns.numpy(), points[curve, 0][order], points[curve, 1][order])
        above = y if above is None else np.maximum(y, above)  # never above the curve before
        want.append(above)
    np.testing.assert_allclose(got, np.stack(want, axis=1), atol=1e-9)
