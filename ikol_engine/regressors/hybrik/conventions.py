"""The numbers that fix how HybrIK's published ResNet-34 regressor sees and measures.

They are the published configuration's (``256x192_adam_lr1e-3-res34_smpl_3d_cam_2x_mix_w_pw3d.yaml``
and its model, transform and demo code in HybrIK's repository); a checkpoint trained with
them only works when its input is prepared, and its output read, the same way.
"""
from __future__ import annotations

#: Side of the square person crop the network takes, pixels.
INPUT_SIZE = 256
#: Heatmap width and height (the crop at a quarter of its resolution) and depth bins.
HEATMAP_SIZE = 64
DEPTH_BINS = 64
#: 29 keypoints (SMPL's 24 joints and five leaves), 23 twists, 10 shape coefficients.
NUM_KEYPOINTS = 29
NUM_TWISTS = 23
NUM_BETAS = 10
#: Focal length (pixels of the 256 crop) of the virtual camera the camera head assumes.
FOCAL_LENGTH = 1000.0
#: Metres per unit of the depth heatmap axis: the "bbox_3d_shape" of 2200 mm. Depths
#: from -0.5 to 0.5 cover 2.2 m about the root.
DEPTH_FACTOR_M = 2.2
#: The person box is enlarged by this factor (after being made square) before cropping.
BOX_SCALE = 1.25
#: Per-channel mean and std the original subtracts and divides by, in the order it
#: applies them to its RGB crop's channels 0, 1, 2. They are ImageNet's BGR-ordered
#: statistics (0.406 is ImageNet's blue mean), applied to R, G, B: matched exactly,
#: since the released weights were trained on inputs normalised this way.
MEAN = (0.406, 0.457, 0.480)
STD = (0.225, 0.224, 0.229)
#: The camera head's offset: predictions are added to this scale and translation.
INIT_CAMERA = (0.9, 0.0, 0.0)
#: Metadata key of an exported ONNX file, and its value for this network's graph and conventions.
FORMAT_KEY, FORMAT = "ikol.format", "hybrik-resnet34-cam/1"
