"""HybrIK's published ResNet-34 regressor (with the camera head), as a torch module.

A 256x256 person crop goes through a ResNet-34; three stride-2 deconvolutions and a
1x1 convolution make a 64x64x64 heatmap per keypoint, read by soft-argmax; the pooled
features feed two fully connected layers and the heads for shape (10 betas, added to
``init_shape``), twist (23 cos/sin pairs) and camera (scale and shift, added to
``init_cam``).

Attribute names follow HybrIK's ``Simple3DPoseBaseSMPLCam`` so that its state dicts load
unchanged. Its SMPL layer and IK are not here: our own IK takes the keypoints and twist.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from . import conventions as hc
from .decode import soft_argmax_3d
from .resnet import FEATURE_CHANNELS, ResNet

#: The ONNX graph's input and outputs, in order (see :meth:`HybrIKNetwork.forward`).
INPUT_NAME = "image"
OUTPUT_NAMES: tuple[str, ...] = ("uvd", "phi", "betas", "camera", "confidence")
#: Channels of the three deconvolutions (the published NUM_DECONV_FILTERS).
DECONV_CHANNELS = (256, 256, 256)
_HIDDEN = 1024


class HybrIKNetwork(nn.Module):
    """The regressor: a normalised crop in, keypoints, twist, shape and camera out.

    Buffers ``init_shape`` (10,) and ``init_cam`` (3,) are part of the state dict, as in
    the original; a fresh module holds zeros and :data:`~.conventions.INIT_CAMERA`.
    """

    def __init__(self) -> None:
        super().__init__()
        self.preact = ResNet()
        layers: list[nn.Module] = []
        channels = FEATURE_CHANNELS
        for out in DECONV_CHANNELS:
            layers += [nn.ConvTranspose2d(channels, out, kernel_size=4, stride=2, padding=1, bias=False),
                       nn.BatchNorm2d(out), nn.ReLU(inplace=True)]
            channels = out
        self.deconv_layers = nn.Sequential(*layers)
        self.final_layer = nn.Conv2d(channels, hc.NUM_KEYPOINTS * hc.DEPTH_BINS, kernel_size=1)
        self.register_buffer("init_shape", torch.zeros(hc.NUM_BETAS))
        self.register_buffer("init_cam", torch.tensor(hc.INIT_CAMERA))
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Linear(FEATURE_CHANNELS, _HIDDEN)
        self.drop1 = nn.Dropout(p=0.5)
        self.fc2 = nn.Linear(_HIDDEN, _HIDDEN)
        self.drop2 = nn.Dropout(p=0.5)
        self.decshape = nn.Linear(_HIDDEN, hc.NUM_BETAS)
        self.decphi = nn.Linear(_HIDDEN, hc.NUM_TWISTS * 2)
        self.deccam = nn.Linear(_HIDDEN, 3)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Runs the network (call ``.eval()`` first: dropout and batch norm as at test time).

        Args:
            image: (B, 3, 256, 256) crop, normalised as :mod:`.crop` does.
        Returns:
            uvd: (B, 29, 3) crop coordinates in -0.5..0.5 (see :mod:`.decode`);
            phi: (B, 23, 2) twist (cos, sin) pairs, unnormalised;
            betas: (B, 10) SMPL shape; camera: (B, 3) scale, x and y shift;
            confidence: (B, 29) in 0..1, from each heatmap's peak probability p on a
            log scale, ``log(p n) / log(n)`` for n bins: a flat heatmap (p = 1/n)
            reads 0, one holding all its mass in a single bin 1. A keypoint the network
            is unsure of (occluded, out of the crop) spreads its heatmap and so gets
            less weight in the IK. (The original's IK weighs all keypoints alike.)
        """
        batch = image.shape[0]
        features = self.preact(image)
        logits = self.final_layer(self.deconv_layers(features))
        uvd, peak = soft_argmax_3d(logits, hc.DEPTH_BINS, hc.HEATMAP_SIZE, hc.HEATMAP_SIZE)
        pooled = self.avg_pool(features).reshape(batch, -1)
        hidden = self.drop2(self.fc2(self.drop1(self.fc1(pooled))))
        betas = self.decshape(hidden) + self.init_shape
        phi = self.decphi(hidden).reshape(batch, hc.NUM_TWISTS, 2)
        camera = self.deccam(hidden) + self.init_cam
        bins = float(hc.DEPTH_BINS * hc.HEATMAP_SIZE * hc.HEATMAP_SIZE)
        confidence = (torch.log(peak * bins) / math.log(bins)).clamp(0.0, 1.0)
        return uvd, phi, betas, camera, confidence
