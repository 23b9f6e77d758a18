"""LivePortrait's network sizes (the released models.yaml, restated as data) and the builder of the five networks.

Every published file was trained at these sizes, so there is one config, not a family of YAMLs: a 256-px crop in,
a 32-channel x 16-deep x 64x64 feature volume, 21 implicit 3-D keypoints, a 512-px frame out.
"""
from __future__ import annotations

import copy

MODEL_PARAMS = {
    # F: image -> 3-D appearance feature volume
    "appearance_feature_extractor": dict(image_channel=3, block_expansion=64, num_down_blocks=2, max_features=512,
                                         reshape_channel=32, reshape_depth=16, num_resblocks=6),
    # M: ConvNeXtV2-tiny -> canonical keypoints, head pose bins, translation, expression, scale
    "motion_extractor": dict(num_kp=21, num_bins=66, depths=(3, 3, 9, 3), dims=(96, 192, 384, 768)),
    # W: keypoints -> 3-D dense motion -> the warped feature volume, flattened to 2-D
    "warping_module": dict(num_kp=21, block_expansion=64, max_features=512, num_down_blocks=2, reshape_channel=32,
                           estimate_occlusion_map=True,
                           dense_motion_params=dict(block_expansion=32, max_features=1024, num_blocks=5,
                                                    reshape_depth=16, compress=4)),
    # G: warped features -> the frame, upscaled 2x (256 -> 512)
    "spade_generator": dict(upscale=2, block_expansion=64, max_features=512, num_down_blocks=2),
    # S: MLPs on flattened keypoints; the stitching one outputs 21*3 offsets and (tx, ty)
    "stitching_retargeting_module": dict(
        stitching=dict(input_size=126, hidden_sizes=(128, 128, 64), output_size=65),
        lip=dict(input_size=65, hidden_sizes=(128, 128, 64), output_size=63),
        eye=dict(input_size=66, hidden_sizes=(256, 256, 128, 128, 64), output_size=63)),
}

NETWORKS = tuple(MODEL_PARAMS)  # the five networks, in the order the published set lists them (F, M, W, G, S)
INPUT_SIZE = 256    # the crop the networks see
OUTPUT_SIZE = 512   # the frame G makes of it


def model_params() -> dict:
    """A copy of MODEL_PARAMS that a caller may change."""
    return copy.deepcopy(MODEL_PARAMS)


def build_networks(params: dict | None = None) -> dict:
    """The five networks with fresh (untrained) weights, keyed as NETWORKS, in eval mode."""
    # imported here, not above: the sizes are read by option checks that should not wait for torch to load
    from fomm_core.model.liveportrait.appearance import AppearanceFeatureExtractor
    from fomm_core.model.liveportrait.convnextv2 import MotionExtractor
    from fomm_core.model.liveportrait.spade_generator import SPADEDecoder
    from fomm_core.model.liveportrait.stitching import StitchingRetargeting
    from fomm_core.model.liveportrait.warping import WarpingNetwork
    params = params or MODEL_PARAMS
    networks = {
        "appearance_feature_extractor": AppearanceFeatureExtractor(**params["appearance_feature_extractor"]),
        "motion_extractor": MotionExtractor(**params["motion_extractor"]),
        "warping_module": WarpingNetwork(**params["warping_module"]),
        "spade_generator": SPADEDecoder(**params["spade_generator"]),
        "stitching_retargeting_module": StitchingRetargeting(**params["stitching_retargeting_module"]),
    }
    return {name: net.eval() for name, net in networks.items()}
