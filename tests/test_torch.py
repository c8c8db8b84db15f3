"""symbreak_fast.torch.init_module_: fills nn.Module parameters in place, torch's RNG untouched."""
import math
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

import symbreak_fast as sbf  # noqa: E402
from symbreak_fast.torch import init_module_  # noqa: E402


def small_cnn():
    return nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Identity(), nn.Flatten(),
                         nn.Linear(8 * 6 * 6, 10))


def block():
    return nn.Sequential(nn.Embedding(50, 32), nn.TransformerEncoderLayer(32, 4, 64, batch_first=True))


def test_import_symbreak_does_not_import_torch():
    code = "import sys, symbreak_fast; print('torch' in sys.modules)"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert r.stdout.strip() == "False"


def test_torch_default_matches_torch_distributions_and_our_streams():
    m = small_cnn()
    init_module_(m, 0)
    conv, lin = m[0], m[5]
    for layer, name in ((conv, "0"), (lin, "5")):
        fan_in = layer.weight[0].numel()
        bound = 1 / math.sqrt(fan_in)       # torch: kaiming_uniform_(a=sqrt(5)) == U(+-1/sqrt(fan_in))
        w = layer.weight.detach().numpy()
        assert np.abs(w).max() <= bound
        assert np.abs(w).max() > 0.95 * bound
        b = layer.bias.detach().numpy()
        assert np.abs(b).max() <= bound
        # bit for bit the documented streams: key / parameter name
        ref_he = sbf.he_uniform(w.shape, sbf.Key(0) / f"{name}.weight", a=math.sqrt(5), layout="oi")
        np.testing.assert_array_equal(w, ref_he)
        np.testing.assert_array_equal(b, sbf.uniform(b.shape, sbf.Key(0) / f"{name}.bias", -bound, bound))
    assert torch.equal(m[1].weight, torch.ones(8)) and torch.equal(m[1].bias, torch.zeros(8))


def test_transformer_block_defaults():
    m = block()
    init_module_(m, 3)
    emb = m[0].weight.detach().numpy()
    np.testing.assert_array_equal(emb, sbf.normal(emb.shape, sbf.Key(3) / "0.weight"))
    attn = m[1].self_attn
    w = attn.in_proj_weight.detach().numpy()
    bound = math.sqrt(6 / (w.shape[0] + w.shape[1]))     # xavier_uniform_ on (3E, E)
    assert bound * 0.95 < np.abs(w).max() <= bound
    assert not attn.in_proj_bias.detach().numpy().any()
    assert not attn.out_proj.bias.detach().numpy().any()  # MHA zeroes out_proj.bias
    assert torch.equal(m[1].norm1.weight, torch.ones(32))


def test_rng_untouched_in_place_and_construction_order_independent():
    torch.manual_seed(1)
    a = block()
    torch.manual_seed(2)
    _ = nn.Linear(3, 3)                       # build in another RNG state
    b = block()
    ptrs = [p.data_ptr() for p in a.parameters()]
    state = torch.get_rng_state()
    init_module_(a, 9)
    init_module_(b, 9)
    assert torch.equal(state, torch.get_rng_state())
    assert ptrs == [p.data_ptr() for p in a.parameters()]
    for (na, pa), (nb, pb) in zip(a.named_parameters(), b.named_parameters()):
        assert na == nb and torch.equal(pa, pb)


def test_schemes_overrides_and_dtypes():
    m = nn.Sequential(nn.Linear(256, 128), nn.Linear(128, 64)).to(torch.bfloat16)
    init_module_(m, 4, "he_normal", overrides={"1.weight": ("xavier_uniform", {"layout": "oi"}),
                                              "*.bias": ("constant", {"value": 0.5})})
    w0 = m[0].weight.detach().float().numpy()
    ref = sbf.he_normal((128, 256), sbf.Key(4) / "0.weight", layout="oi", dtype="bfloat16")
    np.testing.assert_array_equal(w0, ref.astype(np.float32))
    assert abs(w0.std() / math.sqrt(2 / 256) - 1) < 0.05      # 32768 draws: rel. s.e. of std ~0.4%
    assert (m[0].bias.float() == 0.5).all() and (m[1].bias.float() == 0.5).all()
    w1 = m[1].weight.detach().float().numpy()
    assert np.abs(w1).max() <= math.sqrt(6 / (128 + 64)) * (1 + 2 ** -8)


def test_non_contiguous_and_double():
    m = nn.Linear(8, 4).double()
    m.weight = nn.Parameter(torch.empty(8, 4, dtype=torch.float64).t())   # non-contiguous view
    init_module_(m, 5)
    ref = sbf.he_uniform((4, 8), sbf.Key(5) / "weight", a=math.sqrt(5), layout="oi", dtype="float64")
    np.testing.assert_array_equal(m.weight.detach().numpy(), ref)


def test_errors():
    with pytest.raises(ValueError, match="unknown scheme"):
        init_module_(nn.Linear(2, 2), 0, "kaiming")
    with pytest.raises(ValueError, match="to_empty"):
        init_module_(nn.Linear(2, 2, device="meta"), 0)
    m = nn.Linear(2, 2, device="meta").to_empty(device="cpu")
    init_module_(m, 0)                                             # the documented path works
    with pytest.raises(TypeError, match="nn.Module"):
        init_module_(object(), 0)

    class Odd(nn.Module):
        def __init__(self):
            super().__init__()
            self.scale = nn.Parameter(torch.empty(3))

    with pytest.raises(ValueError, match="overrides"):
        init_module_(Odd(), 0)
    init_module_(Odd(), 0, overrides={"scale": "ones"})
    with pytest.raises(ValueError, match="unknown initializer"):
        init_module_(Odd(), 0, overrides={"scale": "nope"})


def test_review_cases_match_torch_defaults():
    # overrides by name use PyTorch's (out, in) layout
    m = nn.Linear(4096, 16)
    init_module_(m, 1, overrides={"weight": "he_normal"})
    assert abs(m.weight.detach().numpy().std() / math.sqrt(2 / 4096) - 1) < 0.03   # 65536 draws
    # Embedding padding row is zero, as in torch
    e = nn.Embedding(10, 4, padding_idx=3)
    init_module_(e, 2)
    assert not e.weight[3].detach().numpy().any() and e.weight[4].detach().numpy().any()
    # Bilinear: weight and bias U(+-1/sqrt(in1))
    b = nn.Bilinear(30, 50, 40)
    init_module_(b, 3)
    bound = 1 / math.sqrt(30)
    for p in (b.weight, b.bias):
        a = np.abs(p.detach().numpy())
        assert a.max() <= bound and a.max() > 0.9 * bound
    # nn.Transformer: every >= 2-D parameter xavier_uniform
    t = nn.Transformer(64, 4, 1, 1, 256, batch_first=True)
    init_module_(t, 4)
    w = t.encoder.layers[0].linear2.weight.detach().numpy()
    xb = math.sqrt(6 / (w.shape[0] + w.shape[1]))
    assert xb * 0.95 < np.abs(w).max() <= xb
    # LSTM / PReLU / RMSNorm / EmbeddingBag defaults
    lstm = nn.LSTM(8, 16)
    init_module_(lstm, 5)
    a = np.abs(lstm.weight_hh_l0.detach().numpy())
    assert a.max() <= 0.25 and a.max() > 0.24
    pr = nn.PReLU()
    init_module_(pr, 6)
    assert float(pr.weight.detach()) == 0.25
    if hasattr(nn, "RMSNorm"):
        r = nn.RMSNorm(8)
        init_module_(r, 7)
        assert torch.equal(r.weight, torch.ones(8))


def test_normal_presets_refuse_uniform():
    with pytest.raises(ValueError, match="uniform preset"):
        sbf.xavier_normal((3, 3), 0, distribution="uniform")
