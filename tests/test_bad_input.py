"""Bad input raises a clear error before anything is written: an audit of the whole public API.

Two parts:

* the generator checks at the top (``test_bad_shape`` ... ``test_truncated_infinite_bound_overflow_is_rejected``);
* ``CASES``: a table of bad-input cases for every public callable and every CLI subcommand, as
  enumerated by ``public_surface()`` (``symbreak_fast.__all__`` and the public methods of its
  classes, ``symbreak_fast.lab.__all__``, the public functions of ``symbreak_fast.dask`` (also the
  initializer wrappers it makes on demand), ``symbreak_fast.torch.init_module_``, and the
  subcommands of ``symbreak-fast``). Each case asserts the exception type (for the CLI: a nonzero
  exit, the message on stderr, no traceback), a message fragment that says what is wrong or what to
  do, and that nothing was written: ``out=`` arrays, MLP parameters and optimizer state, torch
  parameters, the initializer registry, and the case's folder (where file targets point; the CLI
  runs in it) are compared before and after.

``test_every_public_callable_has_cases`` fails when a public callable or subcommand has no case,
so a new function cannot be added without its cases; ``EXEMPT`` lists the few without parameters
(checked to have none). Cases marked ``xfail(strict=True, reason="gap: <file>: ...")`` are known
gaps in files this audit does not own: strict, so a fixed gap fails until its mark is removed.

Not repeated here (``REFERENCED`` names the tests, and a test checks they exist): the scheme,
mode, axis and layout errors of tests/test_init.py, MLP option parsing in tests/test_mlp.py, SPEC
files in tests/test_checkpoint.py, presets in tests/test_presets.py, the backend/device rules
with an emulated GPU in tests/test_dispatch.py. ``python tests/test_bad_input.py`` prints the
number of cases per callable.
"""
import ast
import math
import pathlib
import re
import signal
import sys
import types
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pytest

import symbreak_fast as sbf
from symbreak_fast import _dispatch
from symbreak_fast import init as sbi
from symbreak_fast import lab

GENS = {
    "random_bits": lambda *a, **k: sbf.random_bits(*a, **k),
    "uniform": lambda *a, **k: sbf.uniform(*a, **k),
    "normal": lambda *a, **k: sbf.normal(*a, **k),
    "truncated_normal": lambda *a, **k: sbf.truncated_normal(*a, **k),
}

SHAPE_CASES = [
    ((-1, 3), ValueError, ">= 0"),
    ((2.0, 3), TypeError, "ints"),
    ("abc", TypeError, "ints"),
    (None, TypeError, "shape"),
    (True, TypeError, "shape"),
    ((2 ** 32, 2 ** 32), ValueError, "2\\*\\*63"),
]


@pytest.mark.parametrize("gen", GENS)
@pytest.mark.parametrize("shape,exc,msg", SHAPE_CASES)
def test_bad_shape(gen, shape, exc, msg):
    with pytest.raises(exc, match=msg):
        GENS[gen](shape, 0)


@pytest.mark.parametrize("gen", GENS)
@pytest.mark.parametrize("index,exc,msg", [
    ((slice(0, 4, 2),), ValueError, "step 1"),
    ((10,), IndexError, "out of range"),
    ((-11,), IndexError, "out of range"),
    ((slice(0, 11),), IndexError, "out of range"),
    ((0, 0, 0), IndexError, "3 entries"),
    ((Ellipsis,), TypeError, "Ellipsis"),
    ((np.array([1, 2]),), TypeError, "ints or step-1 slices"),
    ((1.0,), TypeError, "ints or step-1 slices"),
])
def test_bad_index(gen, index, exc, msg):
    with pytest.raises(exc, match=msg):
        GENS[gen]((10, 4), 0, index=index)


def test_index_errors_are_value_errors_too():
    with pytest.raises(ValueError):
        sbf.normal((10,), 0, index=(10,))


@pytest.mark.parametrize("kw,exc,msg", [
    (dict(std=-1.0), ValueError, "std must be >= 0"),
    (dict(std=float("nan")), ValueError, "NaN"),
    (dict(mean=float("inf")), ValueError, "finite"),
    (dict(std=float("inf")), ValueError, "finite"),
    (dict(mean="0"), TypeError, "real number"),
    (dict(std=1e5, dtype="float16"), ValueError, "float16"),
    (dict(dtype="int32"), TypeError, "unsupported dtype"),
    (dict(dtype="float8"), TypeError, "unsupported dtype"),
])
def test_bad_normal_params(kw, exc, msg):
    with pytest.raises(exc, match=msg):
        sbf.normal(5, 0, **kw)


@pytest.mark.parametrize("kw,exc,msg", [
    (dict(low=1.0, high=0.0), ValueError, "low <= high"),
    (dict(low=float("nan")), ValueError, "NaN"),
    (dict(high=float("inf")), ValueError, "finite"),
    (dict(low=-3e38, high=3e38), ValueError, "overflows"),
    (dict(low=0.0, high=1e5, dtype="float16"), ValueError, "overflow"),
])
def test_bad_uniform_params(kw, exc, msg):
    with pytest.raises(exc, match=msg):
        sbf.uniform(5, 0, **kw)


@pytest.mark.parametrize("kw,exc,msg", [
    (dict(lower=1.0, upper=1.0), ValueError, "lower < upper"),
    (dict(lower=2.0, upper=-2.0), ValueError, "lower < upper"),
    (dict(lower=float("nan")), ValueError, "NaN"),
    (dict(lower=20.0, upper=30.0), ValueError, "beyond"),
    (dict(lower=-30.0, upper=-20.0), ValueError, "beyond"),
    (dict(std=-0.5), ValueError, "std must be >= 0"),
])
def test_bad_truncated_params(kw, exc, msg):
    with pytest.raises(exc, match=msg):
        sbf.truncated_normal(5, 0, **kw)


@pytest.mark.parametrize("gen", GENS)
def test_bad_out_leaves_it_untouched(gen):
    dt = np.uint32 if gen == "random_bits" else np.float32
    cases = [
        (np.zeros((3, 4), dt), ValueError, "shape"),
        (np.zeros((4, 3), np.float64 if dt is np.float32 else np.int32), ValueError, "dtype"),
        (np.zeros((4, 6), dt)[:, ::2], ValueError, "C-contiguous"),
        ([0.0] * 12, TypeError, "numpy.ndarray"),
    ]
    ro = np.zeros((4, 3), dt)
    ro.flags.writeable = False
    cases.append((ro, ValueError, "read-only"))
    for out, exc, msg in cases:
        before = np.array(out, copy=True)
        with pytest.raises(exc, match=msg):
            GENS[gen]((4, 3), 0, out=out)
        np.testing.assert_array_equal(np.asarray(out), before)


def test_bad_params_leave_out_untouched():
    out = np.full(5, 7.0, np.float32)
    with pytest.raises(ValueError):
        sbf.normal(5, 0, std=-1.0, out=out)
    assert (out == 7.0).all()


def test_unknown_or_unavailable_backend():
    with pytest.raises(ValueError, match="unknown backend"):
        sbf.normal(5, 0, backend="tpu")
    with pytest.raises(TypeError, match="backend must be a str"):
        sbf.normal(5, 0, backend=3)


def test_zero_size_shapes_work():
    for gen in GENS.values():
        assert gen((0, 3), 0).shape == (0, 3)
        assert gen(0, 0).shape == (0,)


def test_truncated_infinite_bound_overflow_is_rejected():
    # with an infinite bound draws reach ~14-16 std, so the check can't use the finite bound alone
    with pytest.raises(ValueError, match="float16"):
        sbf.truncated_normal(10, 7, std=5000.0, lower=-float("inf"), upper=-13.0, dtype="float16")
    x = sbf.truncated_normal(10 ** 5, 7, std=1000.0, lower=-float("inf"), upper=-13.0, dtype="float16")
    assert np.isfinite(x.astype(np.float32)).all()


# ===========================================================================
# the audit: every public callable and CLI subcommand
# ===========================================================================
import contextlib  # noqa: E402
import inspect  # noqa: E402
import io  # noqa: E402

from symbreak_fast import cli as sbcli  # noqa: E402

try:
    import symbreak_fast.dask as sbd
except ImportError:              # the dask extra is not installed: its functions are not public here
    sbd = None
try:
    import torch
    import symbreak_fast.torch as sbt
except ImportError:              # the torch extra is not installed
    torch = sbt = None

KEY = sbf.Key(7)
S = (4, 3)
CUDA_USABLE = "cupy" in sbf.available_backends()
GPU_HINT = r'pip install "symbreak-fast\[gpu\]"'
# device="cuda:99": a device that does not exist where CuPy works, else the missing GPU/CuPy
CUDA99 = (ValueError, r"cuda:99 does not exist") if CUDA_USABLE else (RuntimeError, GPU_HINT)
HUGE_MEMORY = r"needs .* more than this machine's .* of memory; "


# ---------------------------------------------------------------------------
# the public surface, enumerated
# ---------------------------------------------------------------------------
OPERATOR_METHODS = ("__truediv__",)        # dunders that are public API: key / "name"


def _methods(cls) -> list[str]:
    return [n for n, v in vars(cls).items()
            if (not n.startswith("_") or n in OPERATOR_METHODS)
            and (inspect.isfunction(v) or isinstance(v, (classmethod, staticmethod)))]


def _callables(module, names, prefix) -> set[str]:
    out = set()
    for n in names:
        obj = getattr(module, n)
        if isinstance(obj, types.ModuleType) or not callable(obj):
            continue
        out.add(prefix + n)
        if isinstance(obj, type) and not issubclass(obj, BaseException):
            out |= {f"{prefix}{n}.{m}" for m in _methods(obj)}
    return out


def cli_subcommands() -> list[str]:
    """The subcommands ``symbreak-fast --help`` lists."""
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        try:
            sbcli.main(["--help"])
        except SystemExit:
            pass
    m = re.search(r"\{([a-z0-9_,-]+)\}", buf.getvalue())
    assert m, buf.getvalue()
    return m.group(1).split(",")


def public_surface() -> set[str]:
    names = _callables(sbf, sbf.__all__, "") | _callables(lab, lab.__all__, "lab.")
    if sbd is not None:   # its __all__ plus the wrapper it makes for every built-in initializer
        names |= _callables(sbd, list(sbd.__all__) + list(sbi._BUILTIN_NAMES), "dask.")
    if sbt is not None:
        names.add("torch.init_module_")
    return names | {"cli"} | {f"cli {c}" for c in cli_subcommands()}


def resolve(target: str):
    if target.startswith("cli"):
        return sbcli.main
    module, rest = sbf, target
    for prefix, mod in (("lab.", lab), ("dask.", sbd), ("torch.", sbt)):
        if target.startswith(prefix):
            module, rest = mod, target[len(prefix):]
    obj = module
    for part in rest.split("."):
        obj = getattr(obj, part)
    return obj


# callables without cases, and why (checked by test_exemptions_are_what_they_claim)
EXEMPT = {
    "available_backends": "takes no arguments",
    "preset_names": "takes no arguments",
    "MLP.reset_optimizer": "takes no arguments",
    "lab.Result.to_pandas": "takes no arguments",
    "DivergenceError": "an exception class (raised by MLP.step/fit, not called with user input)",
}

# bad-input tests elsewhere that this table does not repeat: {file: [test functions]}
REFERENCED = {
    "tests/test_init.py": ["test_bad_input", "test_bad_out_rejected", "test_bad_input_leaves_out_untouched",
                           "test_calculate_gain_unknown", "test_calculate_gain_bad_slope",
                           "test_init_params_bad_spec", "test_overflow_to_inf_is_rejected"],
    "tests/test_mlp.py": ["test_bad_constructor_arguments", "test_bad_batches_raise_before_any_change"],
    "tests/test_checkpoint.py": ["test_missing_unwritable_or_directory_target", "test_bad_specs",
                                 "test_cli_dry_run_and_errors"],
    "tests/test_presets.py": ["test_unknown_preset", "test_unknown_config_key_lists_valid_keys",
                              "test_invalid_values"],
    "tests/test_dispatch.py": ["test_unknown_backend_lists_names", "test_bad_device_string",
                               "test_no_cuda_device_is_a_clear_error", "test_bad_cupy_out_untouched"],
    "tests/test_dask.py": ["test_bad_arguments_raise_on_the_client"],
    "tests/test_torch.py": ["test_errors"],
    "tests/test_key.py": ["test_bad_seed", "test_bad_child_name"],
}


# ---------------------------------------------------------------------------
# the case table
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Case:
    target: str                 # a name of public_surface()
    label: str
    run: Callable               # run(ctx): makes the bad call (watched objects via ctx.watch first)
    exc: type | None            # None: a CLI case (nonzero exit, ``match`` on stderr, no traceback)
    match: str
    gap: str | None = None      # "gap: <file>: ..." -> xfail(strict=True)
    seconds: float = 20.0       # longer fails: bad input must be rejected up front (catches hangs)

    @property
    def id(self) -> str:
        return f"{self.target}:{self.label}".replace(" ", "_")


CASES: list[Case] = []


def bad(target, label, run, exc, match, gap=None, seconds=20.0):
    CASES.append(Case(target, label, run, exc, match, gap, seconds))


class CaseTimeout(BaseException):
    """Not an Exception: library code that catches Exception (or OSError) must not swallow it."""


@contextlib.contextmanager
def time_limit(seconds):
    import threading
    if threading.current_thread() is not threading.main_thread():      # pragma: no cover
        yield
        return

    def on_alarm(signum, frame):
        raise CaseTimeout(f"still running after {seconds} s: the bad input was not rejected up front")
    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def snapshot(obj):
    """A comparable picture of everything a bad call must leave alone."""
    if isinstance(obj, pathlib.Path):
        return sorted((str(p.relative_to(obj)), p.stat().st_size if p.is_file() else -1) for p in obj.rglob("*"))
    if isinstance(obj, np.ndarray):
        return obj.shape, obj.dtype.str, obj.tobytes()
    if isinstance(obj, sbf.MLP):
        return (np.asarray(obj.flat_params).tobytes(), tuple(np.asarray(b).tobytes() for b in obj._opt_bufs),
                obj.steps, len(obj.history["loss"]))
    if torch is not None and isinstance(obj, torch.nn.Module):
        return [(k, ("meta", tuple(v.shape)) if v.is_meta else v.detach().cpu().numpy().tobytes())
                for k, v in obj.state_dict().items()]
    if isinstance(obj, types.FunctionType):       # a probe of some state
        return obj()
    raise TypeError(f"cannot watch {type(obj).__name__}")


class Ctx:
    """What a case may use: ``inp`` (a folder for input files), ``out`` (the target folder, which
    must stay as it is; the CLI runs in it), ``watch(obj)`` (obj must be unchanged afterwards)."""

    def __init__(self, tmp: pathlib.Path, monkeypatch):
        self.mp = monkeypatch
        self.inp, self.out = tmp / "in", tmp / "out"
        self.inp.mkdir()
        self.out.mkdir()
        self.watched = []
        self.watch(self.out)

    def watch(self, obj):
        self.watched.append((obj, snapshot(obj)))
        return obj

    def changed(self) -> list[str]:
        return [f"{type(o).__name__} {o if isinstance(o, pathlib.Path) else ''}"
                for o, s in self.watched if snapshot(o) != s]

    def no_cupy(self):
        """As if CuPy were not installed."""
        self.mp.setitem(sys.modules, "cupy", None)
        self.mp.delitem(_dispatch._LOADED, "cupy", raising=False)

    def net(self, **kw):
        kw.setdefault("backend", "numpy")
        return self.watch(sbf.MLP(kw.pop("sizes", [3, 4, 2]), **kw))

    def file(self, name, text):
        p = self.inp / name
        p.write_text(text)
        return str(p)

    def cli(self, *argv):
        """rc of ``symbreak-fast argv`` run in ``out``, with the long jobs replaced by a failure
        (bad arguments must be rejected before they start)."""
        def started(what):
            def f(*a, **k):
                raise AssertionError(f"{what} started: the bad arguments were not rejected first")
            return f
        self.mp.chdir(self.out)
        for name in ("symmetry_experiment", "depth_signal", "depth_training"):
            self.mp.setattr(lab, name, started(f"lab.{name}"))
        self.mp.setattr("symbreak_fast.bench.run", started("the CPU benchmark"))
        self.mp.setattr("symbreak_fast.bench_gpu.run", started("the GPU benchmark"))
        try:
            return sbcli.main([str(a) for a in argv])
        except SystemExit as e:
            return e.code


def _readonly(a):
    a.flags.writeable = False
    return a


# ---------------------------------------------------------------------------
# arrays: the generators and initializers (shape, key, ..., dtype, index, backend, device, out)
# ---------------------------------------------------------------------------
# name: (args after (shape, key), a valid shape, result dtype, has dtype=)
ARRAY_FUNCS = {
    "random_bits": ((), S, np.uint32, False),
    **{n: ((), S, np.float32, True) for n in (
        "uniform", "normal", "truncated_normal", "variance_scaling", "xavier_uniform", "glorot_uniform",
        "xavier_normal", "glorot_normal", "he_uniform", "kaiming_uniform", "he_normal", "kaiming_normal",
        "lecun_uniform", "lecun_normal", "zeros", "ones", "constant", "orthogonal", "identity", "eye")},
    "dirac": ((), (4, 2, 3), np.float32, True),
    "sparse": ((0.5,), S, np.float32, True),
}


def _huge(shape, what):
    """A shape whose element count overflows the counter range, or that fits it but not memory."""
    if len(shape) == 3:
        return (2 ** 21,) * 3 if what == "overflow" else (2 ** 20, 2 ** 20, 2 ** 10)
    return (2 ** 32, 2 ** 32) if what == "overflow" else (2 ** 31, 2 ** 31)


def _noncontiguous(shape, dt):
    return np.zeros(shape[:-1] + (2 * shape[-1],), dt)[..., ::2]


def _array_cases(name, fn, args, shape, dt, has_dtype, prefix=""):
    t = prefix + name

    def call(shp=shape, key=KEY, **kw):
        return lambda ctx: fn(shp, key, *args, **kw)

    def with_out(make_out, **kw):
        def run(ctx):
            out = ctx.watch(make_out())
            return fn(shape, KEY, *args, out=out, **kw)
        return run

    def no_cupy(ctx):
        ctx.no_cupy()
        return fn(shape, KEY, *args, device="cuda")

    bad(t, "shape str", call("abc"), TypeError, "shape must be an int or a sequence of ints")
    bad(t, "shape negative", call((-1,) + shape[1:]), ValueError, r"shape entries must be >= 0")
    bad(t, "shape float entry", call((4.0,) + shape[1:]), TypeError, "shape entries must be ints")
    bad(t, "shape set", call(set(shape)), TypeError, "sequence of ints")
    bad(t, "shape huge count", call(_huge(shape, "overflow")), ValueError, r"2\*\*63 - 1 .*split the tensor")
    bad(t, "shape huge memory", call(_huge(shape, "memory")), MemoryError, HUGE_MEMORY + "generate it in pieces")
    bad(t, "key str", call(key="k"), TypeError, r"seed must be an int in \[0, 2\*\*64\)")
    bad(t, "key negative", call(key=-1), ValueError, r"seed must be in \[0, 2\*\*64\)")
    bad(t, "key float", call(key=1.5), TypeError, "floats and strings are not accepted")
    if has_dtype:
        bad(t, "dtype int32", call(dtype="int32"), TypeError, "unsupported dtype 'int32'; use one of float32")
        bad(t, "dtype None", call(dtype=None), TypeError, "unsupported dtype None; use one of")
        bad(t, "dtype complex", call(dtype=np.complex64), TypeError, "unsupported dtype")
    bad(t, "index out of range", call(index=(shape[0],)), IndexError, "out of range for axis 0")
    bad(t, "index step 2", call(index=(slice(0, 4, 2),)), ValueError, "step 1")
    bad(t, "index float", call(index=(1.0,)), TypeError, "ints or step-1 slices")
    bad(t, "backend unknown", call(backend="tpu"), ValueError, r"unknown backend 'tpu'; choose one of")
    bad(t, "backend int", call(backend=3), TypeError, "backend must be a str")
    bad(t, "device tpu", call(device="tpu"), ValueError, r"device must be None, 'cpu', 'cuda'")
    bad(t, "device int", call(device=0), ValueError, r"device must be None, 'cpu', 'cuda'")
    bad(t, "device cuda:99", call(device="cuda:99"), *CUDA99)
    bad(t, "device cuda without cupy", no_cupy, RuntimeError, GPU_HINT)
    bad(t, "out wrong shape", with_out(lambda: np.full(shape[::-1], 7, dt)), ValueError,
        r"out has shape .* allocate np.empty\(result_shape, dtype\)")
    bad(t, "out wrong dtype", with_out(lambda: np.full(shape, 7, np.float64 if dt != np.float64 else np.float32)),
        ValueError, "out has dtype float64 but")
    bad(t, "out byte-swapped", with_out(lambda: np.full(shape, 7, np.dtype(dt).newbyteorder(">"))), ValueError,
        "out has dtype >")
    bad(t, "out non-contiguous", with_out(lambda: _noncontiguous(shape, dt)), ValueError, "C-contiguous")
    bad(t, "out read-only", with_out(lambda: _readonly(np.full(shape, 7, dt))), ValueError,
        "read-only; pass a writeable array")
    bad(t, "out list", lambda ctx: fn(shape, KEY, *args, out=[0.0] * math.prod(shape)), TypeError,
        "out must be a numpy.ndarray")
    bad(t, "out numpy with device cuda", with_out(lambda: np.full(shape, 7, dt), device="cuda"), ValueError,
        r"out= is a numpy array \(on the CPU\) but device='cuda'")
    if name in _F16_OVERFLOW:
        bad(t, "out float16 overflow", with_out(lambda: np.full(shape, 7, np.float16), dtype="float16",
                                                **_F16_OVERFLOW[name]), ValueError, "float16")


# arguments that overflow float16 (checked before out= is touched)
_F16_OVERFLOW = {
    "uniform": dict(low=0.0, high=1e5), "normal": dict(std=1e5), "truncated_normal": dict(std=1e5),
    "variance_scaling": dict(scale=1e12), "xavier_uniform": dict(gain=1e6), "glorot_uniform": dict(gain=1e6),
    "xavier_normal": dict(gain=1e6), "glorot_normal": dict(gain=1e6), "constant": dict(value=1e5),
    "orthogonal": dict(gain=1e6), "identity": dict(gain=1e5), "eye": dict(gain=1e5),
    "sparse": dict(std=1e5),
}
# (he_* / lecun_*: the gain is at most sqrt(2) and the fan at least 1, so float16 cannot overflow)


# parameter cases per function: (label, shape or None for the valid one, args, kwargs, exc, match)
NAN, INF = float("nan"), float("inf")
SPECIFIC = {
    "random_bits": [("dtype keyword", None, (), dict(dtype="float32"), TypeError, "unexpected keyword argument")],
    "uniform": [
        ("low nan", None, (NAN,), {}, ValueError, "low is NaN"),
        ("high inf", None, (0.0, INF), {}, ValueError, "must be finite"),
        ("low str", None, ("0",), {}, TypeError, "low must be a real number"),
        ("low complex", None, (1j,), {}, TypeError, "low must be a real number"),
        ("low > high", None, (1.0, 0.0), {}, ValueError, "low <= high.*swap them"),
        ("span overflows float32", None, (-3e38, 3e38), {}, ValueError, "overflows float32; narrow the interval"),
        ("low huge int", None, (-10 ** 400,), {}, ValueError, "beyond the float64 range"),
        ("low numpy array", None, (np.array([0.0]),), {}, TypeError, "low must be a real number"),
    ],
    "normal": [
        ("mean nan", None, (NAN,), {}, ValueError, "mean is NaN"),
        ("mean inf", None, (INF,), {}, ValueError, "must be finite"),
        ("std negative", None, (0.0, -1.0), {}, ValueError, r"std must be >= 0.*abs\(std\)"),
        ("std str", None, (0.0, "1"), {}, TypeError, "std must be a real number"),
        ("std bool", None, (0.0, True), {}, TypeError, "std must be a real number"),
        ("mean huge int", None, (10 ** 400,), {}, ValueError, "beyond the float64 range"),
        ("std overflows float32", None, (0.0, 1e38), {}, ValueError, "use a wider dtype or a smaller std"),
    ],
    "truncated_normal": [
        ("lower nan", None, (0.0, 1.0, NAN), {}, ValueError, "lower is NaN"),
        ("upper str", None, (0.0, 1.0, -2.0, "2"), {}, TypeError, "upper must be a real number"),
        ("lower == upper", None, (0.0, 1.0, 1.0, 1.0), {}, ValueError, "lower < upper"),
        ("interval beyond 13 std", None, (0.0, 1.0, 20.0, 30.0), {}, ValueError, "shift `mean` toward"),
        ("std negative", None, (0.0, -0.5), {}, ValueError, "std must be >= 0"),
        ("std inf", None, (0.0, INF), {}, ValueError, "must be finite"),
    ],
    "variance_scaling": [
        ("scale nan", None, (NAN,), {}, ValueError, "scale must be a positive finite number"),
        ("scale str", None, ("1",), {}, ValueError, "scale must be a positive finite number"),
        ("mode list", None, (1.0, ["fan_in"]), {}, ValueError, "mode must be one of"),
        ("1-D shape", (4,), (), {}, ValueError, "at least 2 dims.*use normal/uniform"),
        ("scale overflows float32", None, (1e300,), {}, ValueError, "overflow float32"),
    ],
    "xavier_uniform": [("gain huge", None, (1e200,), {}, ValueError, r"0 < gain\*\*2 < inf"),
                       ("gain str", None, ("1",), {}, ValueError, "gain must be a positive finite number"),
                       ("1-D shape", (4,), (), {}, ValueError, "at least 2 dims")],
    "xavier_normal": [("gain huge", None, (1e200,), {}, ValueError, r"0 < gain\*\*2 < inf"),
                      ("distribution uniform", None, (), dict(distribution="uniform"), ValueError,
                       "use the \\*_uniform preset")],
    "he_uniform": [("a nan", None, (NAN,), {}, ValueError, "negative_slope nan not a valid number"),
                   ("a inf", None, (INF,), {}, ValueError, "negative_slope inf not a valid number"),
                   ("nonlinearity None", None, (0.0, "fan_in", None), {}, ValueError, "Unsupported nonlinearity")],
    "he_normal": [("a nan", None, (NAN,), {}, ValueError, "negative_slope nan not a valid number"),
                  ("a huge", None, (1e200,), {}, ValueError, "negative_slope 1e\\+200 not a valid number"),
                  ("mode fan_avg", None, (0.0, "fan_avg"), {}, ValueError, "'fan_in' or 'fan_out'")],
    "lecun_uniform": [("in_axis out of range", None, (), dict(in_axis=5), ValueError, "in_axis=5 is not a valid axis")],
    "lecun_normal": [("distribution uniform", None, (), dict(distribution="uniform"), ValueError,
                      "use the \\*_uniform preset")],
    "zeros": [("value keyword", None, (), dict(value=1.0), TypeError, "unexpected keyword argument 'value'")],
    "ones": [("1-D huge memory", (2 ** 40,), (), {}, MemoryError, HUGE_MEMORY)],
    "constant": [("value nan", None, (NAN,), {}, ValueError, "value must be a finite number"),
                 ("value complex", None, (1j,), {}, ValueError, "value must be a finite number"),
                 ("value huge int", None, (10 ** 400,), {}, ValueError, "value must be a finite number"),
                 ("value overflows float16", None, (1e5,), dict(dtype="float16"), ValueError,
                  "overflows float16.*use a wider dtype")],
    "orthogonal": [("gain nan", None, (NAN,), {}, ValueError, "gain must be a positive finite number"),
                   ("1-D shape", (4,), (), {}, ValueError, "at least 2 dims"),
                   ("whole matrix beyond memory", (2 ** 18, 2 ** 18), (), dict(index=(0, 0)), MemoryError,
                    HUGE_MEMORY + "use a smaller shape")],
    "identity": [("gain negative", None, (-1.0,), {}, ValueError, "gain must be a positive finite number"),
                 ("gain inf", None, (INF,), {}, ValueError, "gain must be a positive finite number"),
                 ("3-D shape", (3, 3, 3), (), {}, ValueError, "2-D shape, got .*; use dirac")],
    "eye": [("3-D shape", (3, 3, 3), (), {}, ValueError, "2-D shape")],
    "dirac": [("groups None", None, (None,), {}, ValueError, "groups must be a positive int"),
              ("groups do not divide", None, (3,), {}, ValueError, "divisible by groups=3"),
              ("2-D shape", (4, 4), (), {}, ValueError, "3-, 4- or 5-D")],
    "sparse": [("sparsity None", None, (None,), {}, ValueError, r"sparsity must be in \[0, 1\)"),
               ("sparsity 1", None, (1.0,), {}, ValueError, r"sparsity must be in \[0, 1\)"),
               ("std negative", None, (0.5, -1.0), {}, ValueError, "std must be a finite number >= 0"),
               ("3-D shape", (4, 3, 2), (0.5,), {}, ValueError, "2-D shape")],
}
for _alias, _of in (("glorot_uniform", "xavier_uniform"), ("glorot_normal", "xavier_normal"),
                    ("kaiming_uniform", "he_uniform"), ("kaiming_normal", "he_normal")):
    SPECIFIC[_alias] = SPECIFIC[_of][:1]


def _specific_run(fn, name, shape, args, kwargs):
    base = ARRAY_FUNCS[name][1]
    if name == "sparse" and not args:
        args = (0.5,)
    return lambda ctx: fn(base if shape is None else shape, KEY, *args, **kwargs)


for _name, (_args, _shape, _dt, _has_dtype) in ARRAY_FUNCS.items():
    _array_cases(_name, getattr(sbf, _name), _args, _shape, _dt, _has_dtype)
    for _label, _shp, _a, _kw, _exc, _match in SPECIFIC[_name]:
        bad(_name, _label, _specific_run(getattr(sbf, _name), _name, _shp, _a, _kw), _exc, _match)


def _watch_out_then(run_with_out, shape=S, dt=np.float32):
    def run(ctx):
        return run_with_out(ctx.watch(np.full(shape, 7, dt)))
    return run


# a bad parameter must leave out= untouched (the check happens before the write)
bad("normal", "std negative with out", _watch_out_then(lambda out: sbf.normal(S, KEY, 0.0, -1.0, out=out)),
    ValueError, "std must be >= 0")
bad("sparse", "sparsity 2 with out", _watch_out_then(lambda out: sbf.sparse(S, KEY, 2.0, out=out)),
    ValueError, "sparsity must be in")
bad("orthogonal", "layout with out", _watch_out_then(lambda out: sbf.orthogonal(S, KEY, layout="xy", out=out)),
    ValueError, "layout must be 'io' or 'oi'")


# ---------------------------------------------------------------------------
# keys
# ---------------------------------------------------------------------------
for _label, _seed, _exc, _match in [
        ("float", 1.0, TypeError, "floats and strings are not accepted"),
        ("str", "1", TypeError, "use key.child\\(name\\) for names"),
        ("None", None, TypeError, r"seed must be an int in \[0, 2\*\*64\)"),
        ("bool", True, TypeError, "seed must be an int"),
        ("negative", -1, ValueError, "reduce it modulo 2\\*\\*64"),
        ("2**64", 2 ** 64, ValueError, r"seed must be in \[0, 2\*\*64\)"),
        ("numpy negative", np.int64(-1), ValueError, "seed must be in"),
        ("numpy array", np.array([1, 2]), TypeError, "seed must be an int")]:
    bad("Key", _label, lambda ctx, s=_seed: sbf.Key(s), _exc, _match)
for _label, _words, _exc, _match in [
        ("negative", (-1, 0), ValueError, r"k0 must be an int in \[0, 2\*\*32\)"),
        ("float", (1.0, 0), ValueError, "k0 must be an int"),
        ("2**32", (0, 2 ** 32), ValueError, r"k1 must be an int in \[0, 2\*\*32\)"),
        ("str", ("1", 0), ValueError, "k0 must be an int")]:
    bad("Key.from_words", _label, lambda ctx, w=_words: sbf.Key.from_words(*w), _exc, _match)
for _label, _nm, _exc, _match in [
        ("int", 3, TypeError, "child key names are str.*f-string"),
        ("bytes", b"w", TypeError, "child key names are str"),
        ("None", None, TypeError, "child key names are str"),
        ("lone surrogate", "w\ud800", ValueError, "not valid Unicode text")]:
    bad("Key.child", _label, lambda ctx, n=_nm: KEY.child(n), _exc, _match)
bad("Key.__truediv__", "int", lambda ctx: KEY / 3, TypeError, "child key names are str")
bad("Key.__truediv__", "float", lambda ctx: KEY / 1.5, TypeError, "child key names are str")


# ---------------------------------------------------------------------------
# dispatch
# ---------------------------------------------------------------------------
bad("which_backend", "shape negative", lambda ctx: sbf.which_backend((-1, 3)), ValueError, ">= 0")
bad("which_backend", "shape str", lambda ctx: sbf.which_backend("abc"), TypeError, "sequence of ints")
bad("which_backend", "index out of range", lambda ctx: sbf.which_backend(S, index=(9,)), IndexError, "out of range")
bad("which_backend", "backend unknown", lambda ctx: sbf.which_backend(S, backend="tpu"), ValueError,
    "unknown backend 'tpu'")
bad("which_backend", "backend int", lambda ctx: sbf.which_backend(S, backend=3), TypeError, "backend must be a str")
bad("which_backend", "device tpu", lambda ctx: sbf.which_backend(S, device="tpu"), ValueError, "device must be None")
bad("which_backend", "device cuda:-1", lambda ctx: sbf.which_backend(S, device="cuda:-1"), ValueError,
    "'cuda:N' with N >= 0")
bad("which_backend", "out list", lambda ctx: sbf.which_backend(S, out=[0.0]), TypeError, "out must be a numpy.ndarray")
bad("which_backend", "numpy out with device cuda", lambda ctx: sbf.which_backend(S, device="cuda", out=np.zeros(S)),
    ValueError, "out= is a numpy array")
bad("which_backend", "cpu backend with device cuda", lambda ctx: sbf.which_backend(S, backend="numba", device="cuda"),
    ValueError, "runs on the CPU but device='cuda'")


def _enter(name):
    def run(ctx):
        ctx.watch(lambda: _dispatch._CURRENT.get())
        with sbf.use_backend(name):
            pass
    return run


def _enter_without_cupy(ctx):
    ctx.no_cupy()
    return _enter("cupy")(ctx)


bad("use_backend", "unknown", _enter("tpu"), ValueError, "unknown backend 'tpu'; choose one of")
bad("use_backend", "int", _enter(3), TypeError, "backend must be a str")
bad("use_backend", "cupy without cupy", _enter_without_cupy, RuntimeError, GPU_HINT)


# ---------------------------------------------------------------------------
# fans, gains, registry, init_params
# ---------------------------------------------------------------------------
for _label, _a, _kw, _exc, _match in [
        ("1-D shape", ((4,),), {}, ValueError, "at least 2 dims"),
        ("shape negative", ((-1, 3),), {}, ValueError, ">= 0"),
        ("shape str", ("abc",), {}, TypeError, "sequence of ints"),
        ("layout int", (S, 3), {}, ValueError, "layout must be 'io'"),
        ("in_axis twice", ((2, 3, 4),), dict(in_axis=(0, 0)), ValueError, "names an axis twice"),
        ("in_axis str", (S,), dict(in_axis="0"), ValueError, "not a valid axis")]:
    bad("fan_in_fan_out", _label, lambda ctx, a=_a, kw=_kw: sbf.fan_in_fan_out(*a, **kw), _exc, _match)
for _label, _a, _exc, _match in [
        ("None", (None,), ValueError, "Unsupported nonlinearity None"),
        ("int", (3,), ValueError, "Unsupported nonlinearity"),
        ("leaky slope nan", ("leaky_relu", NAN), ValueError, "negative_slope nan not a valid number"),
        ("leaky slope inf", ("leaky_relu", INF), ValueError, "negative_slope inf not a valid number"),
        ("leaky slope huge", ("leaky_relu", 1e200), ValueError, "not a valid number"),
        ("leaky slope str", ("leaky_relu", "0.1"), ValueError, "not a valid number")]:
    bad("calculate_gain", _label, lambda ctx, a=_a: sbf.calculate_gain(*a), _exc, _match)


def _register(name, fn):
    def run(ctx):
        ctx.watch(lambda: dict(sbi.INITIALIZERS))
        sbf.register_initializer(name, fn)
    return run


bad("register_initializer", "name int", _register(3, sbf.zeros), TypeError, "initializer names are non-empty str")
bad("register_initializer", "name empty", _register("", sbf.zeros), TypeError, "non-empty str")
bad("register_initializer", "fn not callable", _register("zz_bad_input", 3), TypeError, "fn must be callable")
bad("register_initializer", "duplicate", _register("zeros", sbf.zeros), ValueError, "'zeros' is already registered")

W = {"w": ((3, 3), "he_normal")}


def _ip(spec, **kw):
    return lambda ctx: sbf.init_params(spec, KEY, **kw)


for _label, _run, _exc, _match in [
        ("spec list", _ip([1]), TypeError, "spec must be a mapping"),
        ("spec None", _ip(None), TypeError, "spec must be a mapping"),
        ("name int", _ip({3: ((3, 3), "zeros")}), TypeError, "parameter names must be str"),
        ("entry str", _ip({"w": "he_normal"}), ValueError, r"parameter 'w': expected \(shape, init\[, kwargs\]\)"),
        ("entry dict without init", _ip({"w": {"shape": [3]}}), ValueError, "needs 'shape' and 'init' keys"),
        ("unknown initializer", _ip({"w": ((3, 3), "glorot")}), ValueError, "unknown initializer 'glorot'"),
        ("shape negative", _ip({"w": ((-1, 3), "zeros")}), ValueError, r"parameter 'w' \(zeros\): shape entries"),
        ("kwargs not a dict", _ip({"w": ((3, 3), "zeros", 5)}), ValueError, "third item .* must be a dict"),
        ("unknown kwarg", _ip({"w": ((3, 3), "he_normal", {"bogus": 1})}), TypeError,
         r"parameter 'w' \(he_normal\):.*'bogus'"),
        ("bad kwarg value", _ip({"w": ((3, 3), "variance_scaling", {"scale": NAN})}), ValueError,
         r"parameter 'w' \(variance_scaling\): scale must be"),
        ("orthogonal 1-D", _ip({"w": ((3, 3), "zeros"), "q": ((3,), "orthogonal")}), ValueError,
         r"parameter 'q' \(orthogonal\): orthogonal needs at least 2 dims"),
        ("sparse without sparsity", _ip({"w": ((3, 3), "sparse")}), TypeError, r"parameter 'w' \(sparse\):.*sparsity"),
        ("reserved kwarg", _ip({"w": ((3, 3), "zeros", {"out": None})}), ValueError, "are set by init_params"),
        ("key str", lambda ctx: sbf.init_params(W, "k"), TypeError, "seed must be an int"),
        ("dtype int8", _ip(W, dtype="int8"), TypeError, "unsupported dtype 'int8'"),
        ("dtype None", _ip(W, dtype=None), TypeError, "unsupported dtype None"),
        ("flat str", _ip(W, flat="yes"), TypeError, "flat must be True or False"),
        ("flat mixed dtypes", _ip({"w": ((3, 3), "zeros", {"dtype": "float64"}), "b": ((3,), "zeros")}, flat=True),
         ValueError, "flat=True needs one dtype"),
        ("flat huge", _ip({"w": ((2 ** 20, 2 ** 20), "zeros")}, flat=True), MemoryError,
         HUGE_MEMORY + "use flat=False"),
        ("flat sum overflows", _ip({"a": ((2 ** 62,), "zeros"), "b": ((2 ** 62,), "zeros")}, flat=True), MemoryError,
         HUGE_MEMORY),
        ("not flat huge", _ip({"w": ((2 ** 20, 2 ** 20), "he_normal")}), MemoryError, HUGE_MEMORY),
        ("engine ray", _ip(W, engine="ray"), ValueError, "engine must be None .* or 'dask'"),
        ("engine dask with flat", _ip(W, engine="dask", flat=True), ValueError, "flat=True is not supported"),
        ("backend unknown", _ip(W, backend="tpu"), ValueError, "unknown backend 'tpu'"),
        ("device tpu", _ip(W, device="tpu"), ValueError, "device must be None"),
        ("device cuda:99", _ip(W, device="cuda:99"), *CUDA99),
        ("callable returns int", _ip({"w": ((3, 3), lambda shape, key, **kw: 5)}), ValueError,
         r"parameter 'w': the initializer returned int"),
        ("callable without backend=", _ip({"w": ((3, 3), lambda shape, key, dtype: None)}), TypeError,
         r"parameter 'w' \(<lambda>\):.*'backend'")]:
    bad("init_params", _label, _run, _exc, _match)


def _no_cupy_then(f):
    def run(ctx):
        ctx.no_cupy()
        return f(ctx)
    return run


bad("init_params", "device cuda without cupy", _no_cupy_then(_ip(W, device="cuda")), RuntimeError, GPU_HINT)


# ---------------------------------------------------------------------------
# presets
# ---------------------------------------------------------------------------
for _label, _a, _kw, _exc, _match in [
        ("unknown", ("gpt3",), {}, ValueError, "unknown preset 'gpt3'; valid presets: gpt2-small"),
        ("None", (None,), {}, ValueError, "unknown preset None"),
        ("unknown config key", ("mlp",), dict(bogus=1), ValueError, "unknown config key.*valid keys"),
        ("sizes negative", ("mlp",), dict(sizes=[3, -1]), ValueError, "positive ints"),
        ("hidden 0", ("llama",), dict(hidden=0), ValueError, "hidden .* must be a positive int"),
        ("hidden nan", ("llama",), dict(hidden=NAN), ValueError, "must be a positive int"),
        ("hidden str", ("llama",), dict(hidden="4096"), ValueError, "must be a positive int"),
        ("alias twice", ("gpt2-small",), dict(n_layer=2, layers=3), ValueError, "given twice")]:
    bad("preset", _label, lambda ctx, a=_a, kw=_kw: sbf.preset(*a, **kw), _exc, _match)


# ---------------------------------------------------------------------------
# save_init: nothing may appear in the target folder (no file, no temporary)
# ---------------------------------------------------------------------------
SPEC = {"w": {"shape": [4, 4], "init": "he_normal"}, "b": {"shape": [4], "init": "zeros"}}


def _save(spec=SPEC, path=None, key=0, **kw):
    return lambda ctx: sbf.save_init(spec, ctx.out / "model.safetensors" if path is None else path(ctx), key, **kw)


for _label, _run, _exc, _match, _sec in [
        ("spec list", _save([1]), TypeError, "spec must be a mapping", 20),
        ("spec empty", _save({}), ValueError, "spec is empty", 20),
        ("shape negative", _save({"w": {"shape": [-1], "init": "zeros"}}), ValueError, "parameter 'w'.*>= 0", 20),
        ("unknown initializer", _save({"w": {"shape": [4], "init": "foo"}}), ValueError,
         "unknown initializer 'foo'", 20),
        ("unknown kwarg", _save({"w": {"shape": [4, 4], "init": "he_normal", "bogus": 1}}), ValueError,
         "parameter 'w'.*'bogus'", 20),
        ("kwarg nan", _save({"w": {"shape": [4, 4], "init": "he_normal", "a": NAN}}), ValueError,
         "parameter 'w'.*not a valid number", 20),
        ("key str", _save(key="k"), TypeError, "seed must be an int", 20),
        ("key negative", _save(key=-1), ValueError, "seed must be in", 20),
        ("dtype int8", _save(dtype="int8"), ValueError, "unsupported dtype 'int8'", 20),
        ("chunk_bytes 0", _save(chunk_bytes=0), ValueError, "chunk_bytes must be an int >= 16", 20),
        ("chunk_bytes float", _save(chunk_bytes=1e6), ValueError, "chunk_bytes must be an int", 20),
        ("path is a folder", _save(path=lambda ctx: ctx.out), IsADirectoryError, "is a directory; give a file name",
         20),
        ("folder missing", _save(path=lambda ctx: ctx.out / "no" / "m.safetensors"), FileNotFoundError,
         "does not exist \\(create it first\\)", 20),
        ("path int", _save(path=lambda ctx: 3), TypeError, "path must be the target file name.*os.PathLike", 20),
        ("progress str", _save(progress="no"), TypeError, "progress must be True or False", 20),
        ("engine ray", _save(engine="ray"), ValueError, "engine must be None, 'local' or 'dask'", 20),
        ("client without dask", _save(client=object()), ValueError, "with engine='dask' only", 20),
        ("tensor beyond the disk", _save({"w": {"shape": [2 ** 40, 2 ** 20], "init": "zeros"}}), OSError,
         "not enough disk space", 3)]:
    bad("save_init", _label, _run, _exc, _match, seconds=_sec)


# ---------------------------------------------------------------------------
# MLP: construction, and every method on a watched net (parameters and optimizer state unchanged)
# ---------------------------------------------------------------------------
def _mlp(**kw):
    kw.setdefault("backend", "numpy")
    return lambda ctx: sbf.MLP(kw.pop("sizes", [3, 4, 2]), **kw)


def _mlp_no_cupy(ctx):
    ctx.no_cupy()
    return sbf.MLP([3, 2], device="cuda")


for _label, _run, _exc, _match in [
        ("sizes int", _mlp(sizes=3), ValueError, "sizes must be a sequence of layer widths"),
        ("sizes one layer", _mlp(sizes=[3]), ValueError, "at least an input and an output width"),
        ("sizes zero width", _mlp(sizes=[3, 0, 2]), ValueError, "every layer width must be a positive int"),
        ("sizes float", _mlp(sizes=[3.0, 2]), ValueError, "positive int"),
        ("sizes huge", _mlp(sizes=[2 ** 20, 2 ** 20, 2]), MemoryError, HUGE_MEMORY + "use smaller layer widths"),
        ("activation unknown", _mlp(activation="swish"), ValueError, "unknown activation 'swish'; choose one of"),
        ("activation slope nan", _mlp(activation=("leaky_relu", {"negative_slope": NAN})), ValueError,
         "negative_slope must be a finite number"),
        ("init unknown", _mlp(init="foo"), ValueError, "unknown init 'foo'; use a registered initializer name"),
        ("init unknown kwarg", _mlp(init=("he_normal", {"bogus": 1})), TypeError,
         r"parameter 'layers.0.weight' \(he_normal\):.*'bogus'"),
        ("init kwarg nan", _mlp(init=("variance_scaling", {"scale": NAN})), ValueError, "scale must be a positive"),
        ("init reserved kwarg", _mlp(init=("he_normal", {"dtype": "float64"})), ValueError, "are set by the MLP"),
        ("bias_init int", _mlp(bias_init=3), ValueError, "unknown bias_init 3"),
        ("key str", _mlp(key="a"), TypeError, "seed must be an int"),
        ("key negative", _mlp(key=-1), ValueError, "seed must be in"),
        ("dtype float16", _mlp(dtype="float16"), ValueError, "dtype must be 'float32' or 'float64'"),
        ("dtype None", _mlp(dtype=None), ValueError, "dtype must be 'float32' or 'float64'"),
        ("loss unknown", _mlp(loss="hinge"), ValueError, "unknown loss 'hinge'"),
        ("optimizer unknown", _mlp(optimizer="rmsprop"), ValueError, "unknown optimizer 'rmsprop'"),
        ("momentum 1", _mlp(optimizer=("momentum", {"momentum": 1.0})), ValueError,
         r"momentum must be in \[0.0, 1.0\)"),
        ("adam eps 0", _mlp(optimizer=("adam", {"eps": 0})), ValueError, "adam eps must be > 0"),
        ("lr nan", _mlp(lr=NAN), ValueError, "lr \\(learning rate\\) must be a positive finite number"),
        ("lr 0", _mlp(lr=0), ValueError, "lr \\(learning rate\\) must be a positive"),
        ("lr str", _mlp(lr="0.1"), ValueError, "lr \\(learning rate\\)"),
        ("backend unknown", _mlp(backend="tpu"), ValueError, "unknown backend 'tpu' for MLP"),
        ("backend int", _mlp(backend=3), TypeError, "backend must be a str"),
        ("device tpu", _mlp(device="tpu", backend=None), ValueError, "device must be None"),
        ("device cuda:99", _mlp(device="cuda:99", backend=None), *CUDA99),
        ("device cuda without cupy", _mlp_no_cupy, RuntimeError, GPU_HINT)]:
    bad("MLP", _label, _run, _exc, _match)

X5 = np.linspace(-1, 1, 15, dtype=np.float32).reshape(5, 3)
Y5 = np.array([0, 1, 0, 1, 1])


def _on_net(method, *args, net_kw=None, **kw):
    def run(ctx):
        net = ctx.net(**(net_kw or {}))
        return getattr(net, method)(*args, **kw)
    return run


_BAD_X = [("X wrong width", np.ones((5, 4)), ValueError, r"X must have shape \(batch, 3\)"),
          ("X 1-D", np.ones(3), ValueError, r"X must have shape \(batch, 3\)"),
          ("X empty", np.ones((0, 3)), ValueError, "X is empty .* pass at least one row"),
          ("X nan", np.full((2, 3), np.nan), ValueError, "X contains NaN or inf .* clean the data"),
          ("X inf", np.full((2, 3), np.inf, np.float32), ValueError, "X contains NaN or inf"),
          ("X complex", np.ones((2, 3), complex), ValueError, "X must hold real numbers"),
          ("X strings", np.full((2, 3), "a"), ValueError, "X must hold real numbers"),
          ("X None", None, ValueError, r"X must have shape \(batch, 3\)")]
for _label, _X, _exc, _match in _BAD_X:
    bad("MLP.forward", _label, _on_net("forward", _X), _exc, _match)
for _label, _X, _exc, _match in _BAD_X[:4]:
    bad("MLP.predict", _label, _on_net("predict", _X), _exc, _match)
_BAD_Y = [("y float labels", Y5.astype(float), ValueError, "integer class labels.*y.astype\\(int\\)"),
          ("y label too large", Y5 + 5, ValueError, r"label 6 is out of range: labels must be in \[0, 2\)"),
          ("y label negative", Y5 - 5, ValueError, "label -5 is out of range"),
          ("y wrong length", Y5[:3], ValueError, r"y of shape \(5,\)"),
          ("y 2-D", Y5[:, None], ValueError, r"y of shape \(5,\)"),
          ("y None", None, ValueError, "class labels y of shape"),
          ("y bool", Y5.astype(bool), ValueError, "integer class labels")]
for _label, _y, _exc, _match in _BAD_Y + [("X nan", np.full((5, 3), np.nan), ValueError, "NaN")]:
    _Xa = X5 if _label.startswith("y") else _y
    _ya = _y if _label.startswith("y") else Y5
    bad("MLP.loss_and_grad", _label, _on_net("loss_and_grad", _Xa, _ya), _exc, _match)
for _label, _y, _exc, _match in [("mse y nan", np.full(5, np.nan), ValueError, "y \\(mse targets\\) contains NaN"),
                                 ("mse y wrong shape", np.ones((5, 2)), ValueError, r"targets y of shape \(5, 1\)"),
                                 ("mse y strings", np.full(5, "a"), ValueError, "mse targets must be real numbers")]:
    bad("MLP.loss_and_grad", _label, _on_net("loss_and_grad", X5, _y, net_kw=dict(sizes=[3, 4, 1], loss="mse")),
        _exc, _match)
for _label, _a, _kw, _exc, _match in [
        ("lr nan", (X5, Y5), dict(lr=NAN), ValueError, "lr \\(learning rate\\) must be a positive finite"),
        ("lr negative", (X5, Y5), dict(lr=-1), ValueError, "lr \\(learning rate\\)"),
        ("lr str", (X5, Y5), dict(lr="0.1"), ValueError, "lr \\(learning rate\\)"),
        ("y label too large", (X5, Y5 + 5), {}, ValueError, "out of range"),
        ("y float labels", (X5, Y5 + 0.0), {}, ValueError, "integer class labels"),
        ("X nan", (np.full((5, 3), np.nan), Y5), {}, ValueError, "NaN or inf"),
        ("X wrong width", (np.ones((5, 4)), Y5), {}, ValueError, "X must have shape")]:
    bad("MLP.step", _label, _on_net("step", *_a, **_kw), _exc, _match)
bad("MLP.step", "adam lr inf", _on_net("step", X5, Y5, lr=INF, net_kw=dict(optimizer="adam")), ValueError, "lr")
for _label, _kw, _exc, _match in [
        ("epochs 0", dict(epochs=0), ValueError, "epochs must be a positive int"),
        ("epochs float", dict(epochs=1.5), ValueError, "epochs must be a positive int"),
        ("batch_size 0", dict(batch_size=0), ValueError, "batch_size must be a positive int"),
        ("batch_size str", dict(batch_size="32"), ValueError, "batch_size must be a positive int"),
        ("lr inf", dict(lr=INF), ValueError, "lr \\(learning rate\\)"),
        ("shuffle str", dict(shuffle="no", progress=False), TypeError, "shuffle must be True or False"),
        ("progress int", dict(progress=2), TypeError, "progress must be True or False")]:
    bad("MLP.fit", _label, _on_net("fit", X5, Y5, **_kw), _exc, _match)
bad("MLP.fit", "X nan", _on_net("fit", np.full((5, 3), np.nan), Y5), ValueError, "X contains NaN or inf")
bad("MLP.fit", "y out of range", _on_net("fit", X5, Y5 + 9), ValueError, "out of range")


# ---------------------------------------------------------------------------
# lab
# ---------------------------------------------------------------------------
def _lab(name, *a, **kw):
    return lambda ctx: getattr(lab, name)(*a, **kw)


def _lab_net(name, *a, **kw):
    def run(ctx):
        return getattr(lab, name)(ctx.net(), *a, **kw)
    return run


for _t, _label, _run, _exc, _match in [
        ("distinct_neurons", "W 1-D", _lab("distinct_neurons", np.ones(3)), ValueError, "W must be a 2-D"),
        ("distinct_neurons", "W None", _lab("distinct_neurons", None), ValueError, "W must be a 2-D"),
        ("distinct_neurons", "tol nan", _lab("distinct_neurons", np.ones((3, 3)), NAN), ValueError,
         "tol must be a finite number >= 0"),
        ("distinct_neurons", "tol negative", _lab("distinct_neurons", np.ones((3, 3)), -1), ValueError,
         "tol must be a finite number >= 0"),
        ("distinct_neurons", "bias wrong length", _lab("distinct_neurons", np.ones((3, 3)), bias=np.ones(2)),
         ValueError, "bias has 2 entries, W has 3 columns"),
        ("distinct_neurons", "W nan", _lab("distinct_neurons", np.full((3, 3), np.nan)), ValueError,
         "holds NaN or inf"),
        ("distinct_neurons", "W complex", _lab("distinct_neurons", np.ones((3, 3), complex)), ValueError, "real"),
        ("distinct_neurons", "W strings", _lab("distinct_neurons", np.full((2, 2), "a")), ValueError,
         "W must hold real numbers"),
        ("symmetry_report", "tol negative", _lab_net("symmetry_report", -1), ValueError, "tol must be"),
        ("symmetry_report", "net None", _lab("symmetry_report", None), TypeError, "MLP"),
        ("signal_propagation", "X wrong width", _lab_net("signal_propagation", np.ones((5, 4))), ValueError,
         r"X must be \(batch, 3\)"),
        ("signal_propagation", "y out of range", _lab_net("signal_propagation", X5, Y5 + 9), ValueError,
         "out of range"),
        ("signal_propagation", "net None", _lab("signal_propagation", None, X5), TypeError, "MLP"),
        ("two_spirals", "n negative", _lab("two_spirals", -1, 0), ValueError, "n must be an int >= 0"),
        ("two_spirals", "n float", _lab("two_spirals", 2.5, 0), TypeError, "n must be an int"),
        ("two_spirals", "key str", _lab("two_spirals", 8, "k"), TypeError, "seed must be an int"),
        ("two_spirals", "noise nan", _lab("two_spirals", 8, 0, noise=NAN), ValueError, "NaN"),
        ("two_spirals", "noise negative", _lab("two_spirals", 8, 0, noise=-1.0), ValueError, ">= 0"),
        ("two_spirals", "turns inf", _lab("two_spirals", 8, 0, turns=INF), ValueError, "turns"),
        ("two_spirals", "dtype int8", _lab("two_spirals", 8, 0, dtype="int8"), TypeError, "dtype"),
        ("gaussian_blobs", "n_classes negative", _lab("gaussian_blobs", 8, 0, n_classes=-2), ValueError,
         "n_classes must be an int >= 1"),
        ("gaussian_blobs", "n_features float", _lab("gaussian_blobs", 8, 0, n_features=2.0), TypeError,
         "n_features must be an int"),
        ("gaussian_blobs", "separation negative", _lab("gaussian_blobs", 8, 0, separation=-1.0), ValueError,
         ">= 0"),
        ("gaussian_blobs", "n_classes 0", _lab("gaussian_blobs", 8, 0, n_classes=0), ValueError, "n_classes"),
        ("teacher_task", "n float", _lab("teacher_task", 2.5, 0), TypeError, "n must be an int"),
        ("teacher_task", "width 0", _lab("teacher_task", 8, 0, width=0), ValueError, "width"),
        ("teacher_task", "depth negative", _lab("teacher_task", 8, 0, depth=-1), ValueError, "depth"),
        ("teacher_task", "n_classes 0", _lab("teacher_task", 8, 0, n_classes=0), ValueError, "n_classes"),
        ("make_data", "unknown", _lab("make_data", "mnist", 8, 0), ValueError,
         r"data must be one of \['blobs', 'spirals', 'teacher'\]"),
        ("make_data", "unknown kwarg", _lab("make_data", "spirals", 8, 0, bogus=1), TypeError,
         "unexpected keyword argument 'bogus'; two_spirals takes noise, turns, dtype"),
        ("make_data", "name list", _lab("make_data", ["spirals"], 8, 0), ValueError, "data must be one of"),
        ("init_weights", "scheme sparse (needs sparsity)", _lab_net("init_weights", "sparse", 0), TypeError,
         "sparsity"),
        ("init_weights", "unknown scheme", _lab_net("init_weights", "foo", 0), ValueError,
         "unknown weight scheme 'foo': use zeros, constant\\(c\\), normal\\(std\\)"),
        ("init_weights", "normal(nan)", _lab_net("init_weights", "normal(nan)", 0), ValueError,
         "unknown weight scheme"),
        ("init_weights", "normal(-1)", _lab_net("init_weights", "normal(-1)", 0), ValueError, "std must be >= 0"),
        ("init_weights", "constant(1e400)", _lab_net("init_weights", "constant(1e400)", 0), ValueError,
         "value must be a finite number"),
        ("init_weights", "key str", _lab_net("init_weights", "he", "k"), TypeError, "seed must be an int"),
        ("init_weights", "scheme int", _lab_net("init_weights", 3, 0), TypeError, "scheme"),
        ("init_weights", "net None", _lab("init_weights", None, "he", 0), TypeError, "MLP"),
        ("Result", "rows not a list", lambda ctx: lab.Result("x", 3, {}), TypeError, "rows"),
        ("Result.table", "unknown column", lambda ctx: lab.Result("x", [{"a": 1}], {}).table(["b"]), ValueError,
         "column"),
        ("format_table", "rows int", _lab("format_table", 3), TypeError, "rows"),
        ("format_table", "rows of ints", _lab("format_table", [1, 2]), TypeError, "rows"),
        ("format_table", "unknown column", _lab("format_table", [{"a": 1}], ["b"]), ValueError, "column"),
        ("pivot", "unknown index key", _lab("pivot", [{"a": 1}], "x", "y", "z"), ValueError, "x"),
        ("pivot", "rows int", _lab("pivot", 3, "x", "y", "z"), TypeError, "rows"),
        ("demo_settings", "quick str", _lab("demo_settings", "no"), TypeError, "quick"),
        ("symmetry_conclusions", "result None", _lab("symmetry_conclusions", None), TypeError, "Result"),
        ("symmetry_conclusions", "result of another experiment",
         _lab("symmetry_conclusions", lab.Result("depth_signal", [{"activation": "relu", "layer": 1}], {})),
         ValueError, "symmetry_experiment"),
        ("depth_signal_conclusions", "result None", _lab("depth_signal_conclusions", None), TypeError, "Result"),
        ("depth_signal_conclusions", "result of another experiment",
         _lab("depth_signal_conclusions", lab.Result("symmetry", [{"scheme": "he"}], {"schemes": ("he",)})),
         ValueError, "depth_signal"),
        ("depth_training_conclusions", "result None", _lab("depth_training_conclusions", None), TypeError,
         "Result"),
        ("depth_training_conclusions", "result of another experiment",
         _lab("depth_training_conclusions", lab.Result("symmetry", [{"scheme": "he"}], {})), ValueError,
         "depth_training"),
        ("write_plots", "results None", lambda ctx: lab.write_plots(None, None, None, ctx.out / "plots"), TypeError,
         "Result"),
        ("write_plots", "results swapped", lambda ctx: lab.write_plots(
            lab.Result("depth_signal", [], {}), lab.Result("symmetry", [], {}), lab.Result("depth_training", [], {}),
            ctx.out / "plots"), ValueError, r"write_plots takes the Result of lab.symmetry_experiment\(\)"),
        ("scheme_variance", "scheme int", _lab("scheme_variance", 3, 4, 4), TypeError, "scheme must be a str"),
        ("scheme_variance", "scheme unknown", _lab("scheme_variance", "foo", 4, 4), ValueError,
         "unknown weight scheme 'foo'"),
        ("scheme_variance", "fan_in 0", _lab("scheme_variance", "he", 0, 4), ValueError, "fan_in must be an int >= 1"),
        ("scheme_variance", "fan_out float", _lab("scheme_variance", "xavier", 4, 4.5), ValueError,
         "fan_out must be an int >= 1"),
        ("Result", "config None", lambda ctx: lab.Result("symmetry", [], None), TypeError, "config must be a dict"),
        ("Result", "name int", lambda ctx: lab.Result(3, [], {}), TypeError, "name must be a str"),
        ("format_table", "columns str", _lab("format_table", [{"a": 1}], "a"), TypeError,
         "columns must be a list or tuple"),
        ("pivot", "key missing in a later row", _lab("pivot", [{"x": 1, "y": 2, "z": 3}, {"x": 1}], "x", "y", "z"),
         ValueError, "row 1 has no key 'y'"),
]:
    bad("lab." + _t, _label, _run, _exc, _match)

_TINY = dict(sizes=(2, 4, 2), n=8, steps=1, batch=8, backend="numpy")
_DEEP = dict(depth=2, width=4, backend="numpy")


def _no_training(run):
    """run(ctx) with lab._train replaced by a failure: the bad argument must be found before any net trains."""
    def wrapped(ctx):
        def started(*a, **k):
            raise AssertionError("a net started training: the bad argument was not rejected up front")
        ctx.mp.setattr(lab, "_train", started)
        return run(ctx)
    return wrapped


for _label, _kw, _exc, _match in [
        ("sizes do not fit", dict(sizes=(3, 4, 2)), ValueError, "do not fit the 'spirals' data"),
        ("data unknown", dict(data="mnist"), ValueError, "data must be one of"),
        ("scheme unknown", dict(schemes=("foo",)), ValueError, "unknown weight scheme 'foo'"),
        ("activation unknown", dict(activation="swish"), ValueError, "unknown activation 'swish'"),
        ("device tpu", dict(device="tpu", backend=None), ValueError, "device must be None"),
        ("sizes int", dict(sizes=3), ValueError, "sizes"),
        ("n 0", dict(n=0), ValueError, "n must be"),
        ("tol nan", dict(tol=NAN), ValueError, "tol must be a finite number >= 0"),
        ("optimizer unknown", dict(optimizer="rmsprop"), ValueError, "unknown optimizer 'rmsprop'"),
        ("steps negative", dict(steps=-1), ValueError, "steps"),
        ("lr nan", dict(lr=NAN), ValueError, "lr"),
        ("schemes str", dict(schemes="he"), TypeError, "schemes"),
        ("batch 0", dict(batch=0), ValueError, "batch must be")]:
    bad("lab.symmetry_experiment", _label,
        _no_training(lambda ctx, kw=_kw: lab.symmetry_experiment(**{**_TINY, **kw})), _exc, _match)
bad("lab.symmetry_experiment", "bad second scheme", _no_training(
    lambda ctx: lab.symmetry_experiment(**{**_TINY, "schemes": ("he", "sparse")})), TypeError, "sparsity")
bad("lab.depth_training", "bad second run", _no_training(
    lambda ctx: lab.depth_training(n=8, steps=1, batch=4, runs=[("relu", "he"), ("relu", "normal(x)")], **_DEEP)),
    ValueError, "unknown weight scheme 'normal\\(x\\)'")
bad("lab.symmetry_experiment", "device cuda without cupy",
    _no_cupy_then(lambda ctx: lab.symmetry_experiment(**{**_TINY, "backend": None, "device": "cuda"})),
    RuntimeError, GPU_HINT)
for _label, _kw, _exc, _match in [
        ("depth 1", dict(depth=1), ValueError, "depth must be >= 2 weight layers"),
        ("width 0", dict(width=0), ValueError, "every layer width must be a positive int"),
        ("activation unknown", dict(activations=("swish",)), ValueError, "unknown activation 'swish'"),
        ("scheme unknown", dict(schemes=("foo",)), ValueError, "unknown weight scheme 'foo'"),
        ("device tpu", dict(device="tpu", backend=None), ValueError, "device must be None"),
        ("depth float", dict(depth=2.5), ValueError, "depth"),
        ("batch 0", dict(batch=0), ValueError, "batch must be")]:
    bad("lab.depth_signal", _label, lambda ctx, kw=_kw: lab.depth_signal(**{"batch": 8, **_DEEP, **kw}),
        _exc, _match)
for _label, _kw, _exc, _match in [
        ("depth 1", dict(depth=1), ValueError, "depth must be >= 2 weight layers"),
        ("data unknown", dict(data="mnist"), ValueError, "data must be one of"),
        ("run activation unknown", dict(runs=[("swish", "he")]), ValueError, "unknown activation 'swish'"),
        ("lr negative", dict(lr=-1.0), ValueError, "lr"),
        ("runs malformed", dict(runs=[("relu",)]), ValueError, "runs"),
        ("steps float", dict(steps=1.5), ValueError, "steps must be an int >= 0"),
        ("data_kw int", dict(data_kw=3), TypeError, "data_kw")]:
    bad("lab.depth_training", _label,
        _no_training(lambda ctx, kw=_kw: lab.depth_training(**{"n": 8, "steps": 1, "batch": 4, **_DEEP, **kw})),
        _exc, _match)


# ---------------------------------------------------------------------------
# symbreak_fast.dask: arguments checked on the client, before any chunk runs
# ---------------------------------------------------------------------------
if sbd is not None:
    for _name in sorted(n.partition(".")[2] for n in public_surface() if n.startswith("dask.")):
        _fn = getattr(sbd, _name)
        _t = "dask." + _name
        if _name == "from_initializer":
            for _label, _run, _exc, _match in [
                    ("unknown name", lambda ctx: sbd.from_initializer("foo", S, KEY), ValueError,
                     "unknown initializer 'foo'; known"),
                    ("not callable", lambda ctx: sbd.from_initializer(3, S, KEY), TypeError,
                     "expected an initializer name or callable"),
                    ("callable without index=", lambda ctx: sbd.from_initializer(lambda s, k: 0, S, KEY), ValueError,
                     "does not accept index="),
                    ("random_bits with a dtype", lambda ctx: sbd.from_initializer("random_bits", S, KEY,
                                                                                  dtype="float64"),
                     TypeError, "random_bits takes no parameters and returns uint32"),
                    ("bad parameter", lambda ctx: sbd.from_initializer("normal", S, KEY, std=-1.0), ValueError,
                     "std must be >= 0")]:
                bad(_t, _label, _run, _exc, _match)
            continue
        if _name == "map_ordered":
            for _label, _run, _exc, _match in [
                    ("window 0", lambda ctx: list(sbd.map_ordered(str, [1], max_in_flight=0)), ValueError,
                     "max_in_flight must be a positive int"),
                    ("window float", lambda ctx: list(sbd.map_ordered(str, [1], max_in_flight=1.5)), ValueError,
                     "max_in_flight must be a positive int"),
                    ("window bool", lambda ctx: list(sbd.map_ordered(str, [1], max_in_flight=True)), ValueError,
                     "max_in_flight must be a positive int"),
                    ("func not callable", lambda ctx: sbd.map_ordered(3, [1]), TypeError, "func must be callable"),
                    ("tasks not iterable", lambda ctx: sbd.map_ordered(str, 3), TypeError, "tasks must be"),
                    ("client not a client", lambda ctx: list(sbd.map_ordered(str, [1], client=3)), TypeError,
                     "client")]:
                bad(_t, _label, _run, _exc, _match)
            continue
        if _name == "default_max_in_flight":
            bad(_t, "client not a client", lambda ctx: sbd.default_max_in_flight(3), TypeError, "client")
            continue
        if _name not in ARRAY_FUNCS:      # a new function: test_every_public_callable_has_cases names it
            continue
        _args, _shape, _dt, _has_dtype = ARRAY_FUNCS[_name]
        bad(_t, "shape negative", lambda ctx, f=_fn, a=_args: f((-1, 3), KEY, *a), ValueError, ">= 0")
        bad(_t, "key str", lambda ctx, f=_fn, a=_args, s=_shape: f(s, "k", *a), TypeError, "seed must be an int")
        if _has_dtype:
            bad(_t, "dtype int8", lambda ctx, f=_fn, a=_args, s=_shape: f(s, KEY, *a, dtype="int8"), TypeError,
                "unsupported dtype 'int8'")
        bad(_t, "out given", lambda ctx, f=_fn, a=_args, s=_shape: f(s, KEY, *a, out=np.zeros(s)), ValueError,
            "out= is not supported for Dask arrays.*dask.array.store")
        bad(_t, "device cuda", lambda ctx, f=_fn, a=_args, s=_shape: f(s, KEY, *a, device="cuda"), ValueError,
            "not supported for Dask arrays")
        bad(_t, "backend cupy", lambda ctx, f=_fn, a=_args, s=_shape: f(s, KEY, *a, backend="cupy"), ValueError,
            "runs on a GPU")
        # the first in-memory parameter case must fail here too (not a memory one: dask arrays are lazy)
        _first = [c for c in SPECIFIC[_name] if c[4] is not MemoryError]
        if _name == "random_bits":       # its in-memory case (a dtype) is from_initializer's here
            _first = [("index out of range", None, (), dict(index=(9,)), IndexError, "out of bounds")]
        if not _first:
            continue
        _lbl, _shp, _a, _kw, _exc, _match = _first[0]
        bad(_t, _lbl, lambda ctx, f=_fn, n=_name, s=_shp, a=_a, kw=_kw: _specific_run(f, n, s, a, kw)(ctx),
            _exc, _match)
    bad("dask.normal", "chunks 0", lambda ctx: sbd.normal(S, KEY, chunks=0), ValueError, "chunks")
    bad("dask.normal", "chunks negative", lambda ctx: sbd.normal(S, KEY, chunks=-5), ValueError, "chunks")
    bad("dask.normal", "chunks tuple with a 0", lambda ctx: sbd.normal(S, KEY, chunks=(2, 0)), ValueError,
        "a chunk size must be a positive int, -1")
    bad("dask.normal", "chunks that do not add up", lambda ctx: sbd.normal(S, KEY, chunks=((2, 1), (3,))), ValueError,
        r"chunks=.* does not fit shape \(4, 3\)")


# ---------------------------------------------------------------------------
# symbreak_fast.torch.init_module_: no parameter changes unless every one can be filled
# ---------------------------------------------------------------------------
if sbt is not None:
    class _IntParam(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(3, 2)
            self.count = torch.nn.Parameter(torch.zeros(3, dtype=torch.int32), requires_grad=False)

    class _NoRule(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(3, 2)
            self.scale = torch.nn.Parameter(torch.ones(3))

    def _tm(*a, module=None, **kw):
        def run(ctx):
            m = ctx.watch(module() if module is not None else torch.nn.Sequential(torch.nn.Linear(3, 4),
                                                                               torch.nn.Linear(4, 2)))
            return sbt.init_module_(m, *a, **kw)
        return run

    for _label, _run, _exc, _match in [
            ("not a module", lambda ctx: sbt.init_module_(3, 0), TypeError, "needs a torch.nn.Module"),
            ("scheme unknown", _tm(0, "foo"), ValueError, "unknown scheme 'foo'; choose one of"),
            ("key str", _tm("k"), TypeError, "seed must be an int"),
            ("overrides int", _tm(0, overrides=3), TypeError, "overrides must be a dict"),
            ("override unknown initializer", _tm(0, overrides={"*.weight": "foo"}), ValueError,
             "override for '\\*.weight': unknown initializer 'foo'"),
            ("override not callable", _tm(0, overrides={"*.weight": 3}), TypeError, "registered name or a callable"),
            ("override triple", _tm(0, overrides={"*.weight": ("he_normal", {}, 1)}), ValueError,
             r"\(initializer, kwargs dict\)"),
            ("override reserved kwarg", _tm(0, overrides={"*.weight": ("he_normal", {"dtype": "float64"})}), ValueError,
             "are set by init_module_"),
            # the failing parameter comes after others: nothing may have been filled
            ("override bad kwarg on the last bias", _tm(0, overrides={"1.bias": ("he_normal", {"bogus": 1})}),
             TypeError, r"parameter '1.bias' \(he_normal\):.*'bogus'"),
            ("override dirac on a bias", _tm(0, overrides={"1.bias": "dirac"}), ValueError,
             r"parameter '1.bias' \(dirac\): dirac needs a 3-, 4- or 5-D"),
            ("override nan kwarg", _tm(0, overrides={"1.weight": ("he_normal", {"a": NAN})}), ValueError,
             "not a valid number"),
            ("override float16 overflow", _tm(0, overrides={"weight": ("constant", {"value": 1e6})},
                                              module=lambda: torch.nn.Linear(2, 2).half()), ValueError,
             "overflows float16"),
            ("backend unknown", _tm(0, backend="tpu"), ValueError, "unknown backend 'tpu'"),
            ("backend int", _tm(0, backend=3), TypeError, "backend must be a str"),
            ("backend cupy on a CPU module", _tm(0, backend="cupy"), ValueError,
             "runs on a CUDA GPU but parameter '0.weight' is on cpu"),
            ("integer parameter", _tm(0, module=_IntParam), TypeError, "cannot initialize a torch.int32 parameter"),
            ("meta parameters", _tm(0, module=lambda: torch.nn.Linear(3, 2, device="meta")), ValueError,
             r"meta device .* module.to_empty\(device='cpu'\)"),
            ("no rule for a parameter", _tm(0, module=_NoRule), ValueError,
             "no 'torch_default' rule for parameter 'scale'.*overrides=")]:
        bad("torch.init_module_", _label, _run, _exc, _match)


# ---------------------------------------------------------------------------
# the command line: a clear message, a nonzero exit, no traceback, nothing written
# ---------------------------------------------------------------------------


def cli(target, label, argv, match, gap=None, seconds=20.0, setup=None):
    def run(ctx):
        if setup is not None:
            setup(ctx)
        return ctx.cli(*(a(ctx) if callable(a) else a for a in argv))
    bad(target, label, run, None, match, gap, seconds)


def _spec_file(text):
    return lambda ctx: ctx.file("spec.json", text)


_GOOD_SPEC = _spec_file('{"params": {"w": {"shape": [4, 4], "init": "he_normal"}}}')
_OUT = lambda ctx: str(ctx.out / "model.safetensors")     # noqa: E731


def _no_cupy_setup(ctx):
    ctx.no_cupy()


cli("cli", "unknown subcommand", ["bogus"], "invalid choice: 'bogus'")
cli("cli", "unknown flag", ["--bogus"], "unrecognized arguments: --bogus")
for _label, _argv, _match, _setup in [
        ("seed negative", ["--seed", "-1"], r"--seed must be in \[0, 2\*\*64\)", None),
        ("seed 2**64", ["--seed", str(2 ** 64)], r"--seed must be in \[0, 2\*\*64\)", None),
        ("seed str", ["--seed", "x"], "argument --seed: invalid int value: 'x'", None),
        ("seed float", ["--seed", "1.5"], "invalid int value: '1.5'", None),
        ("device tpu", ["--device", "tpu"], "argument --device: invalid choice: 'tpu'", None),
        ("unknown flag", ["--bogus"], "unrecognized arguments: --bogus", None),
        ("device cuda without cupy", ["--device", "cuda", "--quick"], GPU_HINT,
         _no_cupy_setup),
        ("out is a file", ["--quick", "--out", lambda ctx: ctx.file("taken", "x")], "--out", None)]:
    cli("cli demo", _label, ["demo"] + _argv, _match, setup=_setup)
for _label, _argv, _match, _setup in [
        ("n 0", ["--n", "0"], "--n, --repeat and --inner must be positive", None),
        ("n negative", ["--n", "-5"], "must be positive", None),
        ("n str", ["--n", "x"], "argument --n: invalid int value: 'x'", None),
        ("repeat 0", ["--repeat", "0"], "must be positive", None),
        ("inner 0", ["--inner", "0"], "must be positive", None),
        ("backend tpu", ["--backend", "tpu"], "argument --backend: invalid choice: 'tpu'", None),
        ("device tpu", ["--device", "tpu"], "argument --device: invalid choice: 'tpu'", None),
        ("backend with device cuda", ["--device", "cuda", "--backend", "numba"],
         "--backend selects a CPU backend", None),
        ("json on the cpu", ["--json", "x.json"], "--json is written by --device cuda only", None),
        ("device cuda without cupy", ["--device", "cuda", "--n", "1024", "--repeat", "1"], GPU_HINT,
         _no_cupy_setup),
        ("n beyond memory", ["--n", str(2 ** 62), "--repeat", "1", "--backend", "numpy"], "--n", None)]:
    cli("cli bench", _label, ["bench"] + _argv, _match, setup=_setup)
for _label, _argv, _match, _sec in [
        ("neither spec nor preset", [], "give either a SPEC file or --preset NAME", 20),
        ("spec and preset", [_GOOD_SPEC, "--preset", "mlp", "-o", _OUT], "not both", 20),
        ("no --out", [_GOOD_SPEC], "--out FILE is required", 20),
        ("preset unknown", ["--preset", "gpt3", "-o", _OUT], "unknown preset 'gpt3'; valid presets", 20),
        ("sizes not ints", ["--preset", "mlp", "--sizes", "3,x", "-o", _OUT], "positive ints", 20),
        ("sizes negative", ["--preset", "mlp", "--sizes", "3,-1", "-o", _OUT], "positive ints", 20),
        ("hidden 0", ["--preset", "llama", "--hidden", "0", "-o", _OUT], "must be a positive int", 20),
        ("hidden str", ["--preset", "llama", "--hidden", "x", "-o", _OUT], "invalid int value: 'x'", 20),
        ("config key unknown", ["--preset", "mlp", "--set", "bogus=1", "-o", _OUT], "unknown config key", 20),
        ("--set without =", ["--preset", "mlp", "--set", "nokv", "-o", _OUT], "--set takes KEY=VALUE", 20),
        ("config flag without preset", [_GOOD_SPEC, "--sizes", "3,4", "-o", _OUT], "need --preset", 20),
        ("config flag the preset lacks", ["--preset", "mlp", "--hidden", "4", "-o", _OUT], "unknown config key", 20),
        ("seed negative", [_GOOD_SPEC, "-o", _OUT, "--seed", "-1"], r"--seed must be in \[0, 2\*\*64\)", 20),
        ("seed 2**64", [_GOOD_SPEC, "-o", _OUT, "--seed", str(2 ** 64)], "--seed must be in", 20),
        ("dtype int8", [_GOOD_SPEC, "-o", _OUT, "--dtype", "int8"], "argument --dtype: invalid choice", 20),
        ("chunk-mb 0", [_GOOD_SPEC, "-o", _OUT, "--chunk-mb", "0"], "--chunk-mb must be positive", 20),
        ("chunk-mb nan", [_GOOD_SPEC, "-o", _OUT, "--chunk-mb", "nan"], "--chunk-mb must be positive", 20),
        ("chunk-mb negative", [_GOOD_SPEC, "-o", _OUT, "--chunk-mb", "-1"], "--chunk-mb must be positive", 20),
        ("chunk-mb tiny", [_GOOD_SPEC, "-o", _OUT, "--chunk-mb", "1e-9"], "chunk_bytes must be an int >= 16",
         20),
        ("chunk-mb inf", [_GOOD_SPEC, "-o", _OUT, "--chunk-mb", "inf"], "--chunk-mb", 20),
        ("engine ray", [_GOOD_SPEC, "-o", _OUT, "--engine", "ray"], "argument --engine: invalid choice", 20),
        ("spec missing", [lambda ctx: str(ctx.inp / "missing.json"), "-o", _OUT], "SPEC file .* does not exist", 20),
        ("spec malformed JSON", [_spec_file('{"params": {'), "-o", _OUT], r"spec.json:1:\d+: malformed JSON", 20),
        ("spec unknown kwarg", [_spec_file('{"params": {"w": {"shape": [4, 4], "init": "he_normal", "bogus": 1}}}'),
                                "-o", _OUT], "parameter 'w'.*'bogus'", 20),
        ("spec unknown initializer, dry run",
         [_spec_file('{"params": {"w": {"shape": [4], "init": "foo"}}}'), "--dry-run"],
         "unknown initializer 'foo'", 20),
        ("out is a folder", [_GOOD_SPEC, "-o", lambda ctx: str(ctx.out)], "is a directory; give a file name", 20),
        ("out folder missing", [_GOOD_SPEC, "-o", lambda ctx: str(ctx.out / "no" / "m.st")],
         "does not exist \\(create it first\\)", 20),
        ("model beyond the disk", ["--preset", "mlp", "--sizes", f"{2 ** 40},{2 ** 20}", "-o", _OUT],
         "not enough disk space", 3)]:
    cli("cli init", _label, ["init"] + _argv, _match, seconds=_sec)


# ---------------------------------------------------------------------------
# the tests
# ---------------------------------------------------------------------------
def _params():
    ids = [c.id for c in CASES]
    dup = {i for i in ids if ids.count(i) > 1}
    assert not dup, f"duplicate case ids: {sorted(dup)}"
    return [pytest.param(c, id=c.id, marks=[pytest.mark.xfail(strict=True, reason=c.gap)] if c.gap else [])
            for c in CASES]


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("case", _params())
def test_bad_input_case(case, tmp_path, monkeypatch, capsys):
    ctx = Ctx(tmp_path, monkeypatch)
    with time_limit(case.seconds):
        if case.exc is None:
            rc = case.run(ctx)
            err = capsys.readouterr().err
            assert rc not in (0, None), f"exit status {rc!r}; stderr: {err}"
            assert "Traceback" not in err, err
            assert re.search(case.match, err), f"{case.match!r} not in stderr: {err!r}"
        else:
            with pytest.raises(case.exc, match=case.match):
                case.run(ctx)
    changed = ctx.changed()
    assert not changed, f"the bad call changed: {changed}"


def test_every_public_callable_has_cases():
    surface = public_surface()
    covered = {c.target for c in CASES}
    missing = sorted(surface - covered - set(EXEMPT))
    assert not missing, f"public callables / CLI subcommands without bad-input cases: {missing}"
    stale = sorted(covered - surface)
    assert not stale, f"cases for names that are not public (renamed or removed?): {stale}"


def test_exemptions_are_what_they_claim():
    surface = public_surface()
    for name, why in EXEMPT.items():
        assert name in surface, f"{name} is exempt but not public"
        assert name not in {c.target for c in CASES}, f"{name} has cases: drop its exemption"
        obj = resolve(name)
        if why == "takes no arguments":
            params = [p for p in inspect.signature(obj).parameters.values() if p.name != "self"]
            assert not params, f"{name} takes {params}: it needs bad-input cases"
        else:
            assert isinstance(obj, type) and issubclass(obj, BaseException), name


def test_referenced_tests_exist():
    root = pathlib.Path(__file__).resolve().parent.parent
    for path, names in REFERENCED.items():
        tree = ast.parse((root / path).read_text())
        defined = {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}
        assert "raises" in (root / path).read_text(), path
        missing = [n for n in names if n not in defined]
        assert not missing, f"{path} no longer has {missing}"


def test_surface_enumeration_sees_the_known_api():
    # guards the enumeration itself: these must be found (else the completeness check is vacuous)
    surface = public_surface()
    for name in ("normal", "Key", "Key.child", "Key.from_words", "Key.__truediv__", "MLP", "MLP.fit", "save_init",
                 "init_params", "use_backend", "lab.two_spirals", "lab.Result.table", "cli init", "cli demo",
                 "cli bench"):
        assert name in surface, name
    if sbd is not None:
        assert {"dask.normal", "dask.he_normal", "dask.map_ordered"} <= surface
    if sbt is not None:
        assert "torch.init_module_" in surface


def test_the_watch_sees_writes(tmp_path, monkeypatch):
    """The "nothing was written" checks can fail: every kind of watched object reports a change."""
    ctx = Ctx(tmp_path, monkeypatch)
    out = ctx.watch(np.zeros(S, np.float32))
    sbf.normal(S, KEY, out=out)
    ctx.net().step(X5, Y5)
    (ctx.out / "model.safetensors").write_bytes(b"x")
    box = []
    ctx.watch(lambda: list(box))
    box.append(1)
    kinds = ["ndarray", "MLP", "PosixPath", "function"]
    if torch is not None:
        sbt.init_module_(ctx.watch(torch.nn.Linear(2, 2)), KEY, "he_normal")
        kinds.append("Linear")
    assert sorted(c.split()[0] for c in ctx.changed()) == sorted(kinds)


def test_time_limit_stops_a_hang():
    with pytest.raises(CaseTimeout):
        with time_limit(0.2):
            while True:
                pass


def count_cases() -> dict[str, int]:
    counts: dict[str, int] = {}
    for c in CASES:
        counts[c.target] = counts.get(c.target, 0) + 1
    return counts


if __name__ == "__main__":     # python tests/test_bad_input.py: the cases per callable
    counts = count_cases()
    gaps = sum(1 for c in CASES if c.gap)
    for name in sorted(counts):
        print(f"{counts[name]:4d}  {name}")
    print(f"{len(CASES)} table cases ({gaps} known gaps, xfail strict) over {len(counts)} callables/subcommands; "
          f"exempt: {sorted(EXEMPT)}")
