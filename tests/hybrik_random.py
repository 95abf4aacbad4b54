"""A randomly initialised HybrIK network whose outputs vary with the image (for parity and pipeline tests).

PyTorch's default start leaves the heatmap logits almost flat, so every keypoint would sit
at the crop's centre whatever the input, which would make a torch/onnxruntime comparison
nearly trivial. Here the batch norms get random affine terms and running statistics
measured on random images (so activations keep a sane scale through the 34 layers, as in
a trained network), and the final layer is rescaled so that its logits spread by about 3:
heatmaps then have peaks that move with the image.
"""
from __future__ import annotations

import torch

from ikol_engine.regressors.hybrik import HybrIKNetwork
from ikol_engine.regressors.hybrik import conventions as hc

LOGIT_SPREAD = 3.0


def random_network(seed: int = 0) -> HybrIKNetwork:
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)  # PyTorch's own initialisers draw from the global generator
    network = HybrIKNetwork()
    batch_norms = [m for m in network.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    images = torch.randn(4, 3, hc.INPUT_SIZE, hc.INPUT_SIZE, generator=generator)
    with torch.no_grad():
        for norm in batch_norms:
            norm.weight.copy_(0.5 + torch.rand(norm.num_features, generator=generator))
            norm.bias.copy_(0.1 * torch.randn(norm.num_features, generator=generator))
            norm.momentum = None  # running statistics = plain average over the calibration batch
        network.train()
        network.preact(images)
        network.deconv_layers(network.preact(images))
        network.eval()
        logits = network.final_layer(network.deconv_layers(network.preact(images[:2])))
        network.final_layer.weight.mul_(LOGIT_SPREAD / logits.std())
        network.final_layer.bias.mul_(LOGIT_SPREAD / logits.std())
        network.deccam.weight.mul_(0.1)  # camera scale stays near its 0.9 start: a person in front
        network.init_shape.copy_(0.5 * torch.randn(hc.NUM_BETAS, generator=generator))
        for norm in batch_norms:
            norm.momentum = 0.1
    return network.eval()
