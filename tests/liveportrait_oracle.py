"""The original LivePortrait code as a test oracle (../shared/reference/liveportrait, or
$FOMM_LIVEPORTRAIT_REFERENCE): what the tests need of fomm_core.bench.liveportrait_reference, which imports it,
takes its wrapper methods, gives its networks seeded random weights saved as the published files hold them, makes
the test pictures and restates the per-frame steps of its pipeline (the bench compares against the same code).

Here only what is the tests' own: the calling test is skipped, with the reason, when the code is absent, and a test
that needs scipy's ConvexHull (the original's expression-friendly mode) is skipped without scipy rather than
measured by our own hull maths.
"""
import pytest

torch = pytest.importorskip("torch", reason="torch is not installed")
np = pytest.importorskip("numpy", reason="numpy is not installed")

from conftest import RUN_CACHE, made_once  # noqa: E402
from fomm_core.bench.liveportrait_reference import (G_HEADS, M_HEADS, MODULES, N_FRAMES,  # noqa: E402
                                                    WRAPPER_METHODS, converge_spectral_norms, driving_frames,
                                                    liveportrait_reference_dir, load_liveportrait_reference,
                                                    load_published, make_wrapper, published_states, randomise,
                                                    reference_frames, reference_keypoints, reference_networks,
                                                    reference_template, save_stress_set, smooth_images,
                                                    source_picture, spread_poses)

__all__ = ["G_HEADS", "M_HEADS", "MODULES", "N_FRAMES", "WRAPPER_METHODS", "converge_spectral_norms", "convex_hull",
           "driving_frames", "load_reference", "make_wrapper", "published_states", "randomise", "reference_dir",
           "reference_frames", "reference_keypoints", "reference_networks", "reference_template", "seeded_networks",
           "seeded_set", "smooth_images", "source_picture", "spread_poses", "worst"]


def reference_dir():
    return liveportrait_reference_dir()


def convex_hull():
    """scipy's ConvexHull, which the original's expression-friendly mode calls; without scipy, a stand-in that
    skips the test calling it."""
    try:
        from scipy.spatial import ConvexHull
    except ImportError:
        def ConvexHull(points):  # noqa: N802 - the name the original calls
            pytest.skip("scipy is not installed: the original measures keypoint hulls with it")
    return ConvexHull


def load_reference():
    """The original's modules, sizes, wrapper methods and helpers (skips the calling test when the code is absent)."""
    pytest.importorskip("yaml", reason="PyYAML reads the original's models.yaml")
    ref = load_liveportrait_reference(hull=convex_hull())
    if ref is None:
        pytest.skip(f"the original LivePortrait code is not at {reference_dir()} (set FOMM_LIVEPORTRAIT_REFERENCE)")
    return ref


def worst(a, b) -> float:
    return (a - b).abs().max().item()


def seeded_set(ref):
    """The folder of the five files (the published layout) of the original's networks seeded as every LivePortrait
    test module seeds them: reference_networks(ref, the test pictures) after torch.manual_seed(0). Seeded once a
    run (4 s: M's poses are spread by running M over the pictures) in the run's cache, where the other modules and
    test processes find it (made_once). Read only."""
    return made_once(RUN_CACHE / "liveportrait-seeded", lambda work: save_stress_set(work, ref, seed=0))


def seeded_networks(ref) -> dict:
    """The original's five networks holding seeded_set's weights, loaded by its own load_model (as the bench's
    reference path loads a set), in evaluation mode: what reference_networks gives after torch.manual_seed(0)."""
    from fomm_core.model.liveportrait.loading import PUBLISHED_FILES
    folder = seeded_set(ref)
    return load_published(ref, {name: folder / rel for name, rel in PUBLISHED_FILES.items()})


def needs_bf16_kernels():
    """Skips the calling test where torch has no bf16 kernels for this CPU (fomm_core.device.cpu_has_bf16_kernels):
    there W's 3-D convolutions in bf16 run on reference loops, 364 s for one call at 128 px against 1.1 s in
    float32 (an AMD EPYC Zen 3, one thread). The bf16 path's rounding is checked where it runs; on such a CPU the
    commands say not to use it (`fast` never times it)."""
    from fomm_core.device import BF16_WITHOUT_KERNELS, cpu_has_bf16_kernels
    if not cpu_has_bf16_kernels():
        pytest.skip(f"W in bf16 takes minutes a call here: {BF16_WITHOUT_KERNELS}")
