"""Fill a PyTorch ``nn.Module``'s parameters in place from symbreak_fast streams.

Optional (``pip install "symbreak-fast[torch]"``); ``import symbreak_fast`` never imports
torch. Every parameter is drawn from ``key / name`` with its name from
``module.named_parameters()``, so two processes that build the same model get
identical weights whatever the construction order or torch's RNG state, and torch's
global RNG is never touched.

CPU tensors are filled through a numpy view of their memory (no copy). CUDA tensors
are filled in place on their GPU through DLPack (a cupy view as ``out=``) when the
"cupy" backend is usable and no CPU backend is asked for (by ``backend=``,
``use_backend`` or SYMBREAK_BACKEND); otherwise, and for other devices, the values are
generated on the CPU and copied over (same bits except ``orthogonal``, whose GPU QR
matches the CPU only to rounding); ``init_module_`` returns once the GPU fills are
done. ``meta`` tensors have no memory: materialize
the module first with ``module.to_empty(device="cpu")`` and then call
``init_module_`` (this is how to initialize a model too large to build twice).
"""
from __future__ import annotations

import fnmatch
import inspect
import math
from collections.abc import Mapping

import numpy as np

import torch  # noqa: F401  (the optional dependency this module adapts)
from torch import nn

from . import _dispatch
from . import init as I
from ._key import as_key
from .random import normal, uniform

SCHEMES = ("torch_default", "he_normal", "he_uniform", "xavier_uniform", "xavier_normal", "lecun_normal",
           "lecun_uniform", "orthogonal")

_NORMS = (nn.LayerNorm, nn.GroupNorm, nn.modules.batchnorm._NormBase)
_RMSNORM = getattr(nn, "RMSNorm", None)
_CONV = (nn.modules.conv._ConvNd,)


def _numpy_view(t: torch.Tensor):
    """A numpy array sharing ``t``'s memory, or None when that is impossible."""
    if t.device.type != "cpu" or not t.is_contiguous():
        return None
    if t.dtype == torch.bfloat16:
        from ._request import bfloat16_dtype
        return t.detach().view(torch.int16).numpy().view(bfloat16_dtype())
    if t.dtype in (torch.float32, torch.float64, torch.float16):
        return t.detach().numpy()
    return None


def _dtype_name(t: torch.Tensor) -> str:
    names = {torch.float32: "float32", torch.float64: "float64", torch.float16: "float16",
             torch.bfloat16: "bfloat16"}
    if t.dtype not in names:
        raise TypeError(f"cannot initialize a {t.dtype} parameter; symbreak_fast fills float32, float64, "
                        "float16 and bfloat16 tensors")
    return names[t.dtype]


def _cupy_view(t: torch.Tensor):
    """A cupy array sharing the contiguous CUDA tensor ``t``'s memory (bfloat16 as uint16 bits)."""
    import cupy
    d = t.detach()
    if t.dtype != torch.bfloat16:
        return cupy.from_dlpack(d)
    u16 = getattr(torch, "uint16", None)
    if u16 is not None:
        try:
            return cupy.from_dlpack(d.view(u16))
        except (TypeError, RuntimeError, BufferError, ValueError):
            pass                       # a torch whose DLPack export lacks uint16
    return cupy.from_dlpack(d.view(torch.int16)).view(cupy.uint16)


def _fill_cuda(t: torch.Tensor, draw) -> None:
    """Fill the CUDA tensor ``t`` on its GPU: in place, or through a contiguous temporary."""
    dt = _dtype_name(t)
    target = t if t.is_contiguous() else torch.empty_like(t, memory_format=torch.contiguous_format)
    out = _cupy_view(target)
    got = draw(tuple(t.shape), dt, out)
    if got is not out:      # a callable that ignored out=: copy its result in if it is a matching cupy array
        if not (_dispatch.is_device_array(got) and got.shape == out.shape and got.dtype == out.dtype):
            raise ValueError(f"the initializer for a {tuple(t.shape)} CUDA parameter returned "
                             f"{type(got).__name__} {getattr(got, 'dtype', '')} instead of writing into out= "
                             f"(a {out.dtype} cupy array); make it honour out=")
        out[...] = got
    if target is not t:
        _synchronize_cuda([int(out.device.id)])      # torch's copy may run on another stream
        t.copy_(target)


def _synchronize_cuda(devices) -> None:
    """Wait for the fills queued on cupy's current stream of each device (torch may use other streams)."""
    import cupy
    for d in devices:
        with cupy.cuda.Device(d):
            cupy.cuda.get_current_stream().synchronize()


def _gpu_fill_wanted(backend) -> bool:
    """Fill CUDA tensors with the GPU backend? Not when a CPU backend is asked for or cupy is unusable."""
    name, _ = _dispatch.requested_backend(backend)
    if name is not None:
        return _dispatch._spec(name).device == "cuda"
    return "cupy" in _dispatch._REGISTRY and _dispatch._REGISTRY["cupy"].probe()[0]


def _fill(t: torch.Tensor, draw, gpu: bool = False) -> None:
    """draw(shape, dtype, out) -> array; write it into ``t`` in place."""
    if gpu and t.device.type == "cuda":
        _fill_cuda(t, draw)
        return
    dt = _dtype_name(t)
    view = _numpy_view(t)
    if view is not None:
        draw(tuple(t.shape), dt, view)
        return
    arr = draw(tuple(t.shape), dt, None)
    if dt == "bfloat16":
        src = torch.from_numpy(np.ascontiguousarray(arr).view(np.int16)).view(torch.bfloat16)
    else:
        src = torch.from_numpy(np.ascontiguousarray(arr))
    t.copy_(src.to(t.device))


def _torch_default(owner: nn.Module, attr: str, shape, weight_shape):
    """(initializer, kwargs) reproducing PyTorch's own default for this parameter."""
    if isinstance(owner, (nn.Embedding, nn.EmbeddingBag)) and attr == "weight":
        return normal, dict(mean=0.0, std=1.0)
    if isinstance(owner, _NORMS) or (_RMSNORM is not None and isinstance(owner, _RMSNORM)):
        return (I.ones, {}) if attr == "weight" else (I.zeros, {})
    if isinstance(owner, nn.PReLU) and attr == "weight":
        return I.constant, dict(value=owner.init if hasattr(owner, "init") else 0.25)
    if isinstance(owner, nn.RNNBase):
        b = 1.0 / math.sqrt(owner.hidden_size) if owner.hidden_size > 0 else 0.0
        return uniform, dict(low=-b, high=b)   # RNNBase.reset_parameters: U(+-1/sqrt(hidden_size))
    if isinstance(owner, nn.Bilinear):
        b = 1.0 / math.sqrt(weight_shape[1])    # Bilinear.reset_parameters: weight and bias
        return uniform, dict(low=-b, high=b)
    if isinstance(owner, nn.MultiheadAttention):
        if attr == "in_proj_weight" or attr.endswith("proj_weight"):
            return I.xavier_uniform, dict(layout="oi")
        if attr in ("in_proj_bias",):
            return I.zeros, {}
        if attr in ("bias_k", "bias_v"):
            return I.xavier_normal, dict(layout="oi")
    if isinstance(owner, (nn.Linear,) + _CONV):
        if attr == "weight":
            # kaiming_uniform_(weight, a=sqrt(5)): bound = sqrt(6 / ((1 + 5) fan_in)) = 1/sqrt(fan_in)
            return I.he_uniform, dict(a=math.sqrt(5), layout="oi")
        if attr == "bias" and weight_shape is not None:
            fan_in, _ = I.fan_in_fan_out(weight_shape, "oi")
            bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
            return uniform, dict(low=-bound, high=bound)
    return None


def _scheme(scheme: str, owner, attr, shape, weight_shape):
    if scheme == "torch_default":
        return _torch_default(owner, attr, shape, weight_shape)
    if isinstance(owner, (nn.Embedding, nn.EmbeddingBag, nn.PReLU) + _NORMS) or \
            (_RMSNORM is not None and isinstance(owner, _RMSNORM)):
        return _torch_default(owner, attr, shape, weight_shape)
    if len(shape) >= 2:
        fn = getattr(I, scheme)
        return fn, dict(layout="oi")
    return I.zeros, {}   # biases and other vectors


def init_module_(module: nn.Module, key, scheme: str = "torch_default", overrides=None, *, backend=None):
    """Fill every parameter of ``module`` in place; returns ``module``.

    ``scheme``: "torch_default" reproduces PyTorch's default distributions (Linear /
    Conv weights kaiming_uniform(a=sqrt 5), biases U(+-1/sqrt(fan_in)), Bilinear and
    RNN/LSTM/GRU U(+-1/sqrt(in1 / hidden)), Embedding(Bag) N(0, 1) with the padding row
    zeroed, norm layers (incl. RMSNorm) ones/zeros, PReLU 0.25, MultiheadAttention
    xavier_uniform in-projection and zero biases, and nn.Transformer's xavier_uniform
    of every >= 2-D parameter); any other name from SCHEMES applies that initializer
    (PyTorch "oi" layout) to every >= 2-D weight, zeros to biases, and keeps the
    defaults of norms, PReLU and embeddings. ``overrides`` maps parameter names or
    glob patterns (``"*.bias"``) to an initializer name or callable, or ``(init,
    kwargs)``; the first matching pattern wins, and initializers that take a
    ``layout`` get ``layout="oi"`` unless the kwargs say otherwise. Module types
    without a rule raise an error that names the parameter.
    """
    if not isinstance(module, nn.Module):
        raise TypeError(f"init_module_ needs a torch.nn.Module, got {type(module).__name__}")
    if scheme not in SCHEMES:
        raise ValueError(f"unknown scheme {scheme!r}; choose one of {SCHEMES}")
    key = as_key(key)
    overrides = _check_overrides(overrides)
    if backend is not None:
        bspec = _dispatch._spec(backend)          # TypeError / ValueError for a bad name, before any write
    owners = dict(module.named_modules())
    plan = []
    for name, p in module.named_parameters():
        if p.device.type == "meta":
            raise ValueError(f"parameter {name!r} is on the meta device (no memory to fill); call "
                             "module.to_empty(device='cpu') first, then init_module_(module, key)")
        _dtype_name(p)
        owner_name, _, attr = name.rpartition(".")
        owner = owners[owner_name]
        shape = tuple(p.shape)
        weight = getattr(owner, "weight", None)
        weight_shape = tuple(weight.shape) if isinstance(weight, torch.Tensor) else None
        choice = None
        for pattern, (fn, kw) in overrides.items():
            if pattern == name or fnmatch.fnmatchcase(name, pattern):
                kw = dict(kw)
                if "layout" not in kw and _takes_layout(fn):
                    kw["layout"] = "oi"      # torch weights are (out, in, *kernel)
                choice = (fn, kw)
                break
        if choice is None and len(shape) >= 2 and any(
                isinstance(owners.get(prefix), nn.Transformer) for prefix in _prefixes(owner_name)):
            choice = (I.xavier_uniform, dict(layout="oi"))   # nn.Transformer._reset_parameters
        parent = owners.get(owner_name.rpartition(".")[0]) if owner_name else None
        if choice is None and isinstance(parent, nn.MultiheadAttention) and owner_name.endswith("out_proj") \
                and attr == "bias":
            choice = (I.zeros, {})   # MultiheadAttention._reset_parameters zeroes out_proj.bias
        if choice is None:
            choice = _scheme(scheme, owner, attr, shape, weight_shape)
        if choice is None:
            hint = "'he_normal'" if len(shape) >= 2 else "('constant', {'value': ...}) or 'zeros'"
            raise ValueError(f"no {scheme!r} rule for parameter {name!r} of {type(owner).__name__}; "
                             f"pass overrides={{{name!r}: {hint}}} (or another initializer)")
        plan.append((name, p, choice))
    if backend is not None and bspec.device == "cuda":
        cpu = [name for name, p, _ in plan if p.device.type != "cuda"]
        if cpu:
            raise ValueError(f"backend={backend!r} runs on a CUDA GPU but parameter {cpu[0]!r} is on "
                             f"{_param(module, cpu[0]).device}; move the module to CUDA first or pass a CPU "
                             "backend (backend=None, 'numba' or 'numpy')")
    for name, p, (fn, kw) in plan:      # every entry's arguments checked before anything is written
        if fn in I._BUILTIN_INITIALIZERS or _takes(fn, "index"):
            shape = tuple(p.shape)
            I._named(name, fn, fn, shape, key / name, dtype=_dtype_name(p), backend="numpy",
                     index=tuple(slice(0, 0) for _ in shape), **kw)
    gpu = any(p.device.type == "cuda" for _, p, _ in plan) and _gpu_fill_wanted(backend)
    with torch.no_grad():
        for name, p, (fn, kw) in plan:
            pkey = key / name
            _fill(p, lambda shape, dt, out, fn=fn, kw=kw, pkey=pkey, name=name:
                  I._named(name, fn, fn, shape, pkey, dtype=dt, out=out, backend=backend, **kw), gpu)
        if gpu:
            _synchronize_cuda({p.device.index if p.device.index is not None else torch.cuda.current_device()
                               for _, p, _ in plan if p.device.type == "cuda"})
        overridden = {name for name, _, _ in plan if any(
            pat == name or fnmatch.fnmatchcase(name, pat) for pat in overrides)}
        for mname, mod in owners.items():           # Embedding.reset_parameters zeroes padding_idx
            wname = f"{mname}.weight" if mname else "weight"
            if isinstance(mod, nn.Embedding) and mod.padding_idx is not None and wname not in overridden:
                mod.weight[mod.padding_idx].fill_(0)
    return module


def _check_overrides(overrides) -> dict:
    """``{pattern: (initializer function, kwargs)}`` from ``overrides``; every entry checked,
    matched or not, so a typo fails before anything is written."""
    if overrides is None:
        return {}
    if not isinstance(overrides, Mapping):
        raise TypeError(f"overrides must be a dict {{parameter name or glob pattern: initializer}}, got "
                        f"{type(overrides).__name__} {overrides!r}")
    out = {}
    for pattern, spec in overrides.items():
        if not isinstance(pattern, str):
            raise TypeError(f"overrides keys are parameter names or glob patterns (str), got {pattern!r}")
        if isinstance(spec, (tuple, list)):
            if len(spec) != 2 or not isinstance(spec[1], Mapping):
                raise ValueError(f"override for {pattern!r}: expected an initializer name, a callable or "
                                 f"(initializer, kwargs dict), got {spec!r}")
            fn, kw = spec[0], dict(spec[1])
        else:
            fn, kw = spec, {}
        if isinstance(fn, str):
            if fn not in I.INITIALIZERS:
                raise ValueError(f"override for {pattern!r}: unknown initializer {fn!r}; known: "
                                 f"{sorted(I.INITIALIZERS)}")
            fn = I.INITIALIZERS[fn]
        elif not callable(fn):
            raise TypeError(f"override for {pattern!r}: the initializer must be a registered name or a callable, "
                            f"got {type(fn).__name__} {fn!r}")
        reserved = {"key", "out", "backend", "device", "index", "dtype"} & set(kw)
        if reserved:
            raise ValueError(f"override for {pattern!r}: {sorted(reserved)} are set by init_module_ (the "
                             "parameter's own dtype and device; backend= of init_module_ itself)")
        out[pattern] = (fn, kw)
    return out


def _param(module: nn.Module, name: str) -> torch.Tensor:
    return dict(module.named_parameters())[name]


def _takes(fn, name: str) -> bool:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return name in params


def _prefixes(owner_name: str):
    """"" and every dotted prefix of ``owner_name`` (the module and its ancestors)."""
    parts = owner_name.split(".") if owner_name else []
    return [""] + [".".join(parts[:i]) for i in range(1, len(parts) + 1)]


def _takes_layout(fn) -> bool:
    try:
        return "layout" in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
