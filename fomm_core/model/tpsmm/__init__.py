"""The Thin-Plate Spline Motion Model (Zhao & Zhang, CVPR 2022; MIT), read top to bottom:

    resnet              ResNet-18 with torchvision's parameter names (torchvision is not a dependency)
    keypoint_detector   image -> K TPS transformations x 5 control points
    dense_motion        keypoints -> K+1 warps (TPS and background), blended into one flow + 4 occlusion masks
    inpainting_network  the source's features warped by the flow, masked at 4 scales, decoded into the frame
    avd_network         animation via disentanglement: the source's identity with the driving pose
    bg_motion_predictor an affine background motion (training only; kept so the published files load strictly)

Built on FOMM's blocks (fomm_core.model.blocks) with instance norms. Parameter names equal the original's, so
the published vox/taichi/ted/mgif.pth.tar load with strict=True.
"""
