"""average_weights.py: the mean of two models, and the inputs it refuses."""
import json
import os
import shutil
import sys

import pytest
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import average_weights as AW  # noqa: E402
import safetensors_io as st  # noqa: E402

CFG = {"hidden_size": 4, "chunk_size": 64}


def _model(path, tensors, cfg=CFG):
    os.makedirs(path)
    st.save_file(tensors, os.path.join(path, "model.safetensors"))
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump(cfg, f)
    return str(path)


def test_mean_in_each_dtype(tmp_path):
    a = _model(tmp_path / "a", {"w": torch.tensor([1.0, 2.0, 3.0]), "b": torch.tensor([0.5, -1.0], dtype=torch.bfloat16)})
    b = _model(tmp_path / "b", {"w": torch.tensor([3.0, 2.0, 0.0]), "b": torch.tensor([1.5, 1.0], dtype=torch.bfloat16)})
    assert AW.average([a, b], [1, 1], str(tmp_path / "m")) == 2
    m = st.load_file(str(tmp_path / "m" / "model.safetensors"))
    assert torch.equal(m["w"], torch.tensor([2.0, 2.0, 1.5]))
    assert m["b"].dtype == torch.bfloat16 and torch.equal(m["b"].float(), torch.tensor([1.0, 0.0]))
    assert json.load(open(tmp_path / "m" / "config.json")) == CFG
    AW.average([a, b], [3, 1], str(tmp_path / "m3"))  # weights are normalised: 0.75 a + 0.25 b
    assert torch.equal(st.load_file(str(tmp_path / "m3" / "model.safetensors"))["w"], torch.tensor([1.5, 2.0, 2.25]))
    with pytest.raises(ValueError, match="exists"):
        AW.average([a, b], [1, 1], str(tmp_path / "m"))
    # the same inputs elsewhere give the same file: the metadata name them by content
    a2, b2 = shutil.copytree(a, tmp_path / "x" / "a"), shutil.copytree(b, tmp_path / "y" / "b")
    AW.average([str(a2), str(b2)], [1, 1], str(tmp_path / "m2"))
    assert open(tmp_path / "m" / "model.safetensors", "rb").read() == open(tmp_path / "m2" / "model.safetensors", "rb").read()


def test_refuses_models_that_differ(tmp_path):
    a = _model(tmp_path / "a", {"w": torch.zeros(3)})
    shape = _model(tmp_path / "s", {"w": torch.zeros(4)})
    names = _model(tmp_path / "n", {"v": torch.zeros(3)})
    cfg = _model(tmp_path / "c", {"w": torch.zeros(3)}, cfg=dict(CFG, hidden_size=8))
    for other, why in ((shape, "is \\(4,\\)"), (names, "other tensors"), (cfg, "config.json differs")):
        with pytest.raises(ValueError, match=why):
            AW.average([a, other], [1, 1], str(tmp_path / "out"))
    with pytest.raises(ValueError, match="at least two"):
        AW.average([a], [1], str(tmp_path / "out"))
    with pytest.raises(ValueError, match="cannot read"):
        AW.average([a, str(tmp_path / "missing")], [1, 1], str(tmp_path / "out"))
    assert not os.path.exists(tmp_path / "out" / "model.safetensors")
