"""The paper's regressor on ONNX: checkpoint loading, export, torch/onnxruntime parity, the backend,
and the whole path from video to motion file with a randomly initialised network.

No released weights are used (they are the user's download): a random network is saved as a
checkpoint laid out like the released ones (with HybrIK's SMPL-layer buffers beside the
network's), exported through the CLI, and run.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import roma
import torch

from hybrik_random import random_network
from ikol_engine import samples, skeleton
from ikol_engine.cli import main
from ikol_engine.regressors.hybrik import CheckpointError, HybrIKNetwork, load_checkpoint
from ikol_engine.regressors.hybrik import conventions as hc
from ikol_engine.regressors.hybrik.decode import crop_to_image, crop_to_metric
from ikol_engine.regressors.hybrik.crop import crop_box, crop_images
from ikol_engine.skeleton.kinematics import forward_kinematics, rest_offsets
from ikol_engine.motion import MotionFileError, read_motion, write_motion
from ikol_engine.pipeline import AnalyzeOptions, analyze, refine
from ikol_engine.regressors import RegressorError, create_regressor
from ikol_engine.regressors.hybrik.onnx_regressor import CPU, CUDA, DEFAULT_BATCH, MAX_BOX_REUSE, OnnxRegressor
from ikol_engine.track.options import SolveOptions
from ikol_engine.skeleton.tree import SMPL_TREE

PARITY = 1e-4  # the bound on |torch - onnxruntime|, every output


def _release_like(network: HybrIKNetwork) -> dict[str, torch.Tensor]:
    """A state dict as HybrIK saves it: the network's tensors plus its SMPL layer's buffers."""
    state = dict(network.state_dict())
    state["smpl.v_template"] = torch.zeros(6890, 3)
    state["smpl.shapedirs"] = torch.zeros(6890, 3, 10)
    state["smpl.parents"] = torch.arange(29)
    state["decsigma.weight"], state["decsigma.bias"] = torch.zeros(29, 1024), torch.zeros(29)
    return state


@pytest.fixture(scope="module")
def network() -> HybrIKNetwork:
    return random_network(0)


@pytest.fixture(scope="module")
def checkpoint(network, tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "random_res34.pth"
    torch.save(_release_like(network), path)
    return path


@pytest.fixture(scope="module")
def exported(checkpoint, tmp_path_factory):
    """The random checkpoint exported through ``ikol-engine export-onnx``."""
    path = tmp_path_factory.mktemp("onnx") / "regressor.onnx"
    assert main(["export-onnx", "--checkpoint", str(checkpoint), "-o", str(path)]) == 0
    return path


def test_checkpoint_loads_unchanged_with_weights_only(network, checkpoint, tmp_path) -> None:
    loaded = load_checkpoint(checkpoint)
    mine = network.state_dict()
    assert set(loaded.state_dict()) == set(mine)
    assert all(torch.equal(loaded.state_dict()[k], mine[k]) for k in mine)
    assert not loaded.training
    # Wrapped under "model" and saved from DataParallel ("module." prefixes): the same weights.
    wrapped = tmp_path / "wrapped.pth"
    torch.save({"model": {f"module.{k}": v for k, v in _release_like(network).items()}, "epoch": 3}, wrapped)
    assert torch.equal(load_checkpoint(wrapped).final_layer.weight, network.final_layer.weight)
    # Only tensors and plain containers: anything else is refused, not unpickled.
    pickled = tmp_path / "pickled.pth"
    torch.save({"model": HybrIKNetwork}, pickled)
    with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint of plain tensors"):
        load_checkpoint(pickled)


def test_wrong_checkpoint_lists_missing_unexpected_and_misshapen_keys(network, tmp_path, capsys) -> None:
    state = _release_like(network)
    del state["deccam.weight"], state["deccam.bias"]           # the model without camera head
    state["decleaf.weight"] = torch.zeros(20, 1024)             # HybrIK's 24-joint model's leaf head
    state["final_layer.weight"] = torch.zeros(24 * 64, 256, 1, 1)  # 24 joints, not 29
    path = tmp_path / "wrong.pth"
    torch.save(state, path)
    with pytest.raises(CheckpointError) as caught:
        load_checkpoint(path)
    message = str(caught.value)
    assert message.startswith(str(path))
    assert "missing (2): deccam.bias, deccam.weight" in message
    assert "unexpected (1): decleaf.weight" in message
    assert "wrong shape (1): final_layer.weight (1536, 256, 1, 1) (expected (1856, 256, 1, 1))" in message
    output = tmp_path / "wrong.onnx"
    assert main(["export-onnx", "--checkpoint", str(path), "-o", str(output)]) == 2
    err = capsys.readouterr().err
    assert "decleaf.weight" in err and "Traceback" not in err and not output.exists()
    missing = tmp_path / "nope.pth"
    assert main(["export-onnx", "--checkpoint", str(missing), "-o", str(output)]) == 2
    assert "no such checkpoint file" in capsys.readouterr().err


def test_export_without_onnx_says_how_to_get_it(checkpoint, tmp_path, monkeypatch, capsys) -> None:
    import ikol_engine.regressors.hybrik.export as export

    monkeypatch.setattr(export, "export_available", lambda: False)  # as in an install without the extra
    output = tmp_path / "x.onnx"
    assert main(["export-onnx", "--checkpoint", str(checkpoint), "-o", str(output)]) == 2
    err = capsys.readouterr().err
    assert "pip install 'ikol-mocap[export]'" in err and "Traceback" not in err and not output.exists()


@pytest.mark.parametrize("batch", [1, 7])
def test_torch_and_onnxruntime_agree(network, exported, batch) -> None:
    import onnxruntime

    session = onnxruntime.InferenceSession(str(exported), providers=[CPU])
    images = torch.randn(batch, 3, hc.INPUT_SIZE, hc.INPUT_SIZE, generator=torch.Generator().manual_seed(batch))
    with torch.no_grad():
        expected = [t.numpy() for t in network(images)]
    got = session.run(["uvd", "phi", "betas", "camera", "confidence"], {"image": images.numpy()})
    shapes = [(batch, 29, 3), (batch, 23, 2), (batch, 10), (batch, 3), (batch, 29)]
    assert [g.shape for g in got] == shapes
    for name, a, b in zip(("uvd", "phi", "betas", "camera", "confidence"), expected, got):
        assert np.abs(a - b).max() < PARITY, (name, np.abs(a - b).max())
    # Not a constant network: keypoints spread over the crop and move with the image.
    assert expected[0][..., :2].std(axis=1).min() > 0.01
    if batch > 1:
        assert expected[0].std(axis=0).mean() > 0.01


class FixedBoxes:
    """A box source for tests: given boxes, with misses where ``found`` is False."""

    def __init__(self, boxes: np.ndarray, found: np.ndarray) -> None:
        self.boxes, self.found, self.calls = boxes, found, 0

    def __call__(self, images):
        n = len(images)
        out = self.boxes[self.calls:self.calls + n], self.found[self.calls:self.calls + n]
        self.calls += n
        return out

    def reset(self) -> None:
        self.calls = 0

    def close(self) -> None:
        pass


def test_backend_crops_batches_and_decodes_like_the_network(network, exported, capsys) -> None:
    frames = 5 + MAX_BOX_REUSE
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (240, 320, 3), dtype=np.uint8) for _ in range(frames)]
    boxes = np.tile([[100.0, 40.0, 180.0, 220.0]], (frames, 1))
    found = np.ones(frames, dtype=bool)
    found[2:] = False  # lost after two frames: the last box carries MAX_BOX_REUSE frames, then nothing
    regressor = OnnxRegressor(exported, batch_size=3, boxes=FixedBoxes(boxes, found))
    assert regressor.provider in (CPU, CUDA)
    assert f"runs on onnxruntime's {regressor.provider}" in capsys.readouterr().err
    result = regressor(images)
    regressor.close()
    assert result.keypoint_names == skeleton.KEYPOINT_NAMES
    expected_detected = np.arange(frames) < 2 + MAX_BOX_REUSE
    assert (result.detected == expected_detected).all()
    assert result.twist.shape == (frames, 23) and result.betas.shape == (10,)
    # The same frames through torch and the decoding functions: what the backend returns.
    crops = crop_box(boxes[:3])
    with torch.no_grad():
        outputs = network(torch.from_numpy(crop_images(images[:3], crops)))
    uvd, phi, _, camera, confidence = (t.numpy() for t in outputs)
    centres = np.full((3, 2), [160.0, 120.0])
    assert np.abs(result.keypoints[:3] - crop_to_metric(uvd, camera, crops, centres)).max() < 1e-3  # metres
    assert np.abs(result.image_keypoints[:3] - crop_to_image(uvd, crops)).max() < 0.05            # pixels
    turn = result.twist[:3] - np.arctan2(phi[..., 1], phi[..., 0])
    assert np.abs(np.angle(np.exp(1j * turn))).max() < 1e-3  # radians, compared modulo a full turn
    assert np.abs(result.confidence[:3] - confidence).max() < 1e-4
    assert (result.keypoints[:, 0] == 0).all()  # pelvis-relative
    assert (result.keypoints[~expected_detected] == 0).all()
    with OnnxRegressor(exported, boxes=FixedBoxes(boxes, found)) as default:  # batch chosen for the provider
        assert default.batch_size == DEFAULT_BATCH[default.provider] and DEFAULT_BATCH[CPU] == 1


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the TorchScript exporter, chosen on purpose
def test_bad_model_files_fail_clearly(tmp_path) -> None:
    with pytest.raises(RegressorError, match="no such ONNX model file"):
        create_regressor(f"onnx:{tmp_path / 'missing.onnx'}")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model" * 10)
    with pytest.raises(RegressorError, match="onnxruntime cannot load it"):
        OnnxRegressor(junk)
    other = tmp_path / "other.onnx"
    torch.onnx.export(torch.nn.Linear(3, 2), (torch.zeros(1, 3),), str(other), dynamo=False,
                      input_names=["x"], output_names=["y"])
    with pytest.raises(RegressorError, match="not an IKOL export of HybrIK's ResNet-34 regressor"):
        OnnxRegressor(other)
    with pytest.raises(ValueError, match="needs the model file"):
        create_regressor("onnx")


@pytest.fixture(scope="module")
def analysed(exported, tmp_path_factory):
    output = tmp_path_factory.mktemp("motion") / "demo.npz"
    options = AnalyzeOptions(end_s=1.0, stride=3, regressor=f"onnx:{exported}", batch_size=4)
    motion, solution = analyze(samples.demo_video(), output, options, SolveOptions(device="cpu"))
    return output, motion, solution


def test_video_to_motion_file_with_the_random_network(analysed, body) -> None:
    output, motion, solution = analysed
    frames = 10  # 1 s at 30 fps, every third frame
    assert len(motion.valid) == frames and motion.valid.sum() >= frames - 2
    valid = motion.valid
    assert motion.rotations.shape == (frames, 24, 4) and motion.translation.shape == (frames, 3)
    assert motion.targets.shape == (frames, 29, 3) and motion.twist.shape == (frames, 23)
    assert motion.regressor_keypoints.shape == (frames, 29, 3) and motion.image_keypoints.shape == (frames, 29, 2)
    assert tuple(motion.regressor_keypoint_names) == skeleton.KEYPOINT_NAMES
    assert motion.regressor_twist.shape == (frames, 23) and motion.regressor_betas.shape == (10,)
    for array in (motion.rotations, motion.translation, motion.targets, motion.residual_mm, motion.twist,
                  motion.regressor_keypoints, motion.regressor_twist, motion.betas):
        assert np.isfinite(array).all()
    assert np.abs(np.linalg.norm(motion.rotations, axis=-1) - 1.0).max() < 1e-5
    assert solution.info["keypoints"] == "hybrik"
    # The file reads back whole, optional fields included.
    again = read_motion(output)
    assert np.array_equal(again.regressor_twist, motion.regressor_twist)
    assert np.array_equal(again.regressor_betas, motion.regressor_betas)

    # The IK contract: the stored rotations, shape and translation pose the body onto the
    # solved keypoints (FK of the file reproduces them to float32 round-off), and the
    # stored residual is their mean distance to the confident targets. A random network's
    # targets are no human skeleton (measured residual about 0.3 m), so how close the IK
    # gets is bounded only loosely here; test_hybrik_targets holds it to < 1 mm on exact
    # HybrIK-style targets.
    q = torch.from_numpy(motion.rotations[valid]).double()
    rotations = roma.unitquat_to_rotmat(torch.cat([q[..., 1:], q[..., :1]], dim=-1))
    offsets = rest_offsets(body.rest_keypoints(torch.from_numpy(motion.betas).double()[None]), SMPL_TREE)
    _, posed = forward_kinematics(rotations, offsets.expand(len(q), -1, -1),
                                  torch.from_numpy(motion.translation[valid]).double(), SMPL_TREE)
    assert np.abs(posed.numpy() - solution.keypoints[valid]).max() < 1e-4
    seen = motion.target_confidence[valid] > 0
    distance = np.linalg.norm(solution.keypoints[valid] - motion.targets[valid], axis=-1)
    mean_mm = 1000 * (distance * seen).sum(-1) / seen.sum(-1)
    assert np.abs(mean_mm - motion.residual_mm[valid]).max() < 0.05
    assert motion.residual_mm[valid].max() < 1000.0


def test_optional_regressor_fields_are_checked_and_may_be_absent(analysed, tmp_path) -> None:
    _, motion, _ = analysed
    frames = len(motion.valid)
    with pytest.raises(MotionFileError, match=r"regressor_twist has shape \(10, 22\), expected \(T=10, 23\)"):
        write_motion(tmp_path / "bad.npz", dataclasses.replace(motion, regressor_twist=np.zeros((frames, 22))))
    with pytest.raises(MotionFileError, match="regressor_betas has shape"):
        write_motion(tmp_path / "bad.npz", dataclasses.replace(motion, regressor_betas=np.zeros(11)))
    plain = dataclasses.replace(motion, regressor_twist=None, regressor_twist_confidence=None, regressor_betas=None)
    again = read_motion(write_motion(tmp_path / "plain.npz", plain))  # as files written before these fields
    assert again.regressor_twist is None and again.regressor_betas is None
    assert "regressor_twist" not in np.load(tmp_path / "plain.npz").files


def test_refine_resolves_a_hybrik_motion_without_the_network(analysed, tmp_path) -> None:
    output, motion, _ = analysed
    refined, solution = refine(output, tmp_path / "refined.npz", SolveOptions(iterations=2, smoothing=0.0,
                                                                              device="cpu"))
    assert np.array_equal(refined.regressor_twist, motion.regressor_twist)
    assert solution.info["keypoints"] == "hybrik" and refined.options["solve"]["iterations"] == 2
    assert solution.info["shape"] == "kept" and np.array_equal(refined.betas, motion.betas)
    assert (refined.valid == motion.valid).all()
    assert np.isfinite(refined.rotations).all() and not np.allclose(refined.rotations, motion.rotations)


def test_cli_analyze_with_the_onnx_regressor(exported, tmp_path, capsys) -> None:
    output = tmp_path / "cli.npz"
    code = main(["analyze", str(samples.demo_video()), "-o", str(output), "--end", "0.4", "--stride", "3",
                 "--regressor", f"onnx:{exported}", "--batch-size", "2", "--iterations", "2", "--device", "cpu"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "wrote" in captured.out and "runs on onnxruntime's" in captured.err
    assert read_motion(output).regressor_twist.shape == (4, 23)
    assert main(["analyze", str(samples.demo_video()), "-o", str(output), "--regressor", "onnx:/nope.onnx"]) == 2
    assert "no such ONNX model file" in capsys.readouterr().err
    assert main(["analyze", str(samples.demo_video()), "-o", str(output), "--batch-size", "0"]) == 2
