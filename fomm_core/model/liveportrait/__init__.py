"""LivePortrait (Guo et al. 2024; MIT), read top to bottom:

    config           the network sizes of the published models and `build_networks`
    blocks           3-D conv blocks, the 3-D hourglass, keypoint Gaussians in 3-D
    appearance       F: the source crop -> a 32 x 16 x 64 x 64 feature volume
    convnextv2       M: ConvNeXtV2-tiny -> canonical keypoints, head-pose bins, translation, expression, scale
    motion           bins to degrees, rotations, eq. 2, stitching and the relative motion of the original pipeline
    warping          W: 3-D dense motion from two keypoint sets, the feature volume warped by it
    spade_generator  G: the warped features -> a 512-px frame
    stitching        S: the stitching and eye/lip retargeting MLPs
    loading          the five published state dicts loaded strictly (spectral norm folded)

One frame: f_s = F(source); x_s, x_d from M through `motion`; frame = G(W(f_s, x_d, x_s)["out"]).
Parameter names equal the original's, so the published files load with strict=True.
"""
