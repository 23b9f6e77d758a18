"""Motion transfer against the original demo's maths (torch.inverse, scipy-style hull areas) on random inputs."""
import math
import random

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch is not installed")

from fomm_core.inference.motion import (closest_shape, find_best_frame, hull_area, inverse_2x2,  # noqa: E402
                              movement_scale, normalize_kp)


def random_kp(gen, b=2, k=10):
    value = torch.rand(b, k, 2, generator=gen) * 2 - 1
    jacobian = torch.eye(2).expand(b, k, 2, 2) + 0.3 * torch.randn(b, k, 2, 2, generator=gen)
    return {"value": value, "jacobian": jacobian}


def original_normalize_kp(kp_source, kp_driving, kp_initial, scale):
    # the original demo's formula, written out with torch.inverse
    value = (kp_driving["value"] - kp_initial["value"]) * scale + kp_source["value"]
    jac = torch.matmul(torch.matmul(kp_driving["jacobian"], torch.inverse(kp_initial["jacobian"])),
                       kp_source["jacobian"])
    return value, jac


def test_inverse_2x2_matches_torch_inverse():
    gen = torch.Generator().manual_seed(1)
    m = torch.eye(2) + 0.5 * torch.randn(4, 10, 2, 2, generator=gen, dtype=torch.float64)
    assert torch.allclose(inverse_2x2(m), torch.inverse(m), rtol=1e-10, atol=1e-12)
    m32 = m.float()
    assert torch.allclose(inverse_2x2(m32), torch.inverse(m32), rtol=1e-4, atol=1e-5)


def polygon_area_bruteforce(points):
    # hull by gift wrapping, independent from the monotone chain under test
    pts = [tuple(p) for p in points]
    start = min(pts)
    hull, current = [], start
    while True:
        hull.append(current)
        candidate = pts[0] if pts[0] != current else pts[1]
        for p in pts:
            cross = ((candidate[0] - current[0]) * (p[1] - current[1])
                     - (candidate[1] - current[1]) * (p[0] - current[0]))
            if cross < 0 or (cross == 0 and math.dist(current, p) > math.dist(current, candidate)):
                candidate = p
        current = candidate
        if current == start:
            break
    return abs(sum(hull[i][0] * hull[i - 1][1] - hull[i - 1][0] * hull[i][1] for i in range(len(hull)))) / 2


def test_hull_area_known_shapes_and_random_points():
    square = [(0, 0), (2, 0), (2, 2), (0, 2), (1, 1), (0.5, 1.5)]
    assert hull_area(square) == pytest.approx(4.0)
    assert hull_area([(0, 0), (1, 1), (2, 2)]) == 0.0  # collinear
    rng = random.Random(3)
    for _ in range(20):
        pts = [(rng.uniform(-1, 1), rng.uniform(-1, 1)) for _ in range(10)]
        assert hull_area(pts) == pytest.approx(polygon_area_bruteforce(pts), rel=1e-9)


@pytest.mark.parametrize("adapt", [False, True])
def test_normalize_kp_matches_the_original_formula(adapt):
    gen = torch.Generator().manual_seed(2)
    src, drv, init = random_kp(gen), random_kp(gen), random_kp(gen)
    scale = 1.0
    if adapt:
        scale = math.sqrt(polygon_area_bruteforce(src["value"][0].tolist())) / math.sqrt(
            polygon_area_bruteforce(init["value"][0].tolist()))
        assert movement_scale(src, init) == pytest.approx(scale, rel=1e-6)
        assert scale != pytest.approx(1.0)
    out = normalize_kp(src, drv, init, adapt_movement_scale=adapt, use_relative_movement=True,
                       use_relative_jacobian=True)
    value, jac = original_normalize_kp(src, drv, init, scale)
    assert torch.allclose(out["value"], value, atol=1e-6)
    assert torch.allclose(out["jacobian"], jac, rtol=1e-4, atol=1e-5)


def test_normalize_kp_absolute_and_without_relative_jacobian():
    gen = torch.Generator().manual_seed(4)
    src, drv, init = random_kp(gen), random_kp(gen), random_kp(gen)
    out = normalize_kp(src, drv, init)
    assert out["value"] is drv["value"] and out["jacobian"] is drv["jacobian"]
    out = normalize_kp(src, drv, init, use_relative_movement=True, use_relative_jacobian=False)
    assert out["jacobian"] is drv["jacobian"]
    assert not torch.equal(out["value"], drv["value"])


def test_closest_shape_ignores_translation_and_scale():
    rng = np.random.default_rng(5)
    source = rng.uniform(-1, 1, (10, 2))
    others = [rng.uniform(-1, 1, (10, 2)) for _ in range(4)]
    moved = source * 0.4 + np.array([0.3, -0.2])  # same shape, shifted and shrunk
    frames = others[:2] + [moved] + others[2:]
    assert closest_shape(source, frames) == 2


def test_find_best_frame_without_landmarks_says_so():
    pytest.importorskip("numpy")
    try:
        import face_alignment  # noqa: F401
        pytest.skip("face_alignment is installed here")
    except ImportError:
        pass
    frames = torch.rand(3, 3, 32, 32)
    index, how, stand_in = find_best_frame(torch.rand(1, 3, 32, 32), frames)
    assert index == 0 and stand_in and "face_alignment" in how

    def detector(images):  # a stand-in keypoint detector: keypoints = the mean colour, scaled per frame
        b = images.shape[0]
        base = torch.tensor([[0, 0], [1, 0], [0, 1], [1, 1.5]], dtype=torch.float32)
        return {"value": base.expand(b, 4, 2) * (1 + images.mean()) + images.mean(dim=(1, 2, 3)).view(b, 1, 1)
                * torch.tensor([[0, 0], [0, 0], [0, 0], [0.0, 5]])}
    frames = torch.stack([torch.full((3, 8, 8), v) for v in (0.9, 0.0, 0.5)])
    index, how, stand_in = find_best_frame(torch.zeros(1, 3, 8, 8), frames, kp_detector=detector)
    assert index == 1 and stand_in and "keypoints" in how
