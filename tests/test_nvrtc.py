"""Every CUDA kernel compiles with NVRTC for sm_80 and sm_90 with the production options.

Uses CuPy's NVRTC bindings and the nvidia-cuda-nvrtc wheel, which need no GPU and no driver
(.ci/run installs both). The PTX is then inspected: the options must have removed every fused
multiply-add and kept IEEE division and square root, which is what makes the device's bits the
reference's bits (the host emulation in test_cuda_host.py proves the arithmetic itself), and
every kernel must store whole Philox blocks with one vector store. All checks are per kernel
(per ``.entry``), so one kernel cannot hide behind another.
"""
import os
import re
import shutil
import subprocess

import pytest

from symbreak_fast.backends import cuda_cupy


def _nvrtc():
    try:
        from cupy_backends.cuda.libs import nvrtc
        nvrtc.getVersion()
    except Exception as e:  # cupy missing, or the NVRTC library missing
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the NVRTC compile check but NVRTC is unusable: {e!r}; install "
                        "cupy-cuda13x and nvidia-cuda-nvrtc (see .ci/run)")
        pytest.skip(f"NVRTC not available ({e!r}); pip install cupy-cuda13x nvidia-cuda-nvrtc")
    return nvrtc


def compile_ptx(arch: str, options=cuda_cupy.NVRTC_OPTIONS) -> str:
    _nvrtc()
    ptx = cuda_cupy.compile_kernels(arch, "ptx", options)      # the production compile path
    return ptx.decode() if isinstance(ptx, bytes) else ptx


@pytest.fixture(scope="module", params=["80", "90"])
def ptx(request):
    return request.param, compile_ptx(request.param)


def entries(text: str) -> dict[str, str]:
    """{kernel name: its PTX body} (each ``.entry`` up to the next one; the kernels call no
    non-inlined functions, checked below, so the body is all of a kernel's code)."""
    parts = re.split(r"(?=^\.(?:visible\s+)?\.entry\s)", text, flags=re.M)
    out = {}
    for part in parts[1:]:
        m = re.match(r"\.(?:visible\s+)?\.entry\s+(\w+)", part)
        out[m.group(1)] = part
    return out


# the widest store a whole Philox block can use: 4 x 32-bit or 2 x float64 in 16 bytes, 4 x 16-bit in 8
VECTOR_STORE = {"uint32": r"v4\.u32", "float32": r"v4\.f32", "float16": r"v4\.u16", "bfloat16": r"v4\.u16",
                "float64": r"v2\.f64"}


def kernel_dtype(name: str) -> str:
    return "uint32" if name == "sbf_random_bits_uint32" else name.rsplit("_", 1)[1]


FLOAT_ARITH = re.compile(r"\b(add|sub|mul)((?:\.\w+)*)\.f(16|32|64)\b")
FUSED = re.compile(r"\b(fma|mad)(\.\w+)*\.f(16|32|64)\b")


def arithmetic_problems(body: str) -> list[str]:
    """What in one kernel's PTX could round differently from the reference: a floating add/sub/mul
    without an explicit .rn (PTX lets ptxas contract those into FMAs; .rn forbids it), any
    floating fma/mad, approximate or flush-to-zero forms, min/max (the spec clamps with
    comparisons, which differ on -0.0 and NaN)."""
    bad = [m.group(0) for m in FLOAT_ARITH.finditer(body) if ".rn" not in m.group(2)]
    bad += [m.group(0) for m in FUSED.finditer(body)]
    bad += re.findall(r"\S*(?:\.approx|\.ftz|div\.full)\S*", body)
    bad += re.findall(r"\b(?:min|max)(?:\.\w+)*\.f(?:16|32|64)\b", body)
    return sorted(set(bad))


def test_every_kernel_compiles(ptx):
    arch, text = ptx
    assert f".target sm_{arch}" in text
    names = set(entries(text))
    assert names == set(cuda_cupy.KERNEL_NAMES), names ^ set(cuda_cupy.KERNEL_NAMES)
    assert not re.search(r"^\.(?:visible\s+)?\.func\b", text, re.M), "a non-inlined device function"


@pytest.mark.parametrize("name", cuda_cupy.KERNEL_NAMES)
def test_kernel_arithmetic_is_the_reference(ptx, name):
    """Per kernel: every floating add/sub/mul carries .rn and none is fused, no approximations."""
    _, text = ptx
    body = entries(text)[name]
    assert not arithmetic_problems(body), arithmetic_problems(body)
    if name != "sbf_random_bits_uint32":        # the float kernels do float arithmetic at all
        assert FLOAT_ARITH.search(body)
    if "normal" in name:                        # Box-Muller / inverse CDF: IEEE division and sqrt
        w = "64" if name.endswith("float64") else "32"
        assert re.search(rf"\bdiv\.rn\.f{w}\b", body) and re.search(rf"\bsqrt\.rn\.f{w}\b", body)


@pytest.mark.parametrize("name", cuda_cupy.KERNEL_NAMES)
def test_kernel_stores_whole_blocks_with_one_vector_store(ptx, name):
    """Per kernel: the widest vector store of a whole Philox block's outputs is there (16 bytes for
    4 x 32-bit and 2 x float64, 8 bytes for 4 x 16-bit); the scalar stores are the edge path.
    No local-memory traffic (the values stay in registers)."""
    _, text = ptx
    body = entries(text)[name]
    dt = kernel_dtype(name)
    stores = re.findall(r"\bst\.global(?:\.\w+)*", body)
    vec = [st for st in stores if re.search(r"\.v[24]\.", st)]
    assert vec and all(re.search(VECTOR_STORE[dt] + r"$", st) for st in vec), (name, stores)
    assert not re.search(r"\b(?:ld|st)\.local\b", body), f"{name} spills to local memory"


def test_the_checks_can_fail():
    """The per-kernel checks find what they look for: PTX with a contracted fma, a plain mul.f32
    and a scalar-only store is refused."""
    fake = (".visible .entry sbf_uniform_float32(\n{\n mul.f32 %f1, %f2, %f3;\n fma.rn.f32 %f4, %f1, %f2, %f3;\n"
            " st.global.f32 [%rd1], %f4;\n}\n")
    body = entries(fake)["sbf_uniform_float32"]
    assert arithmetic_problems(body) == ["fma.rn.f32", "mul.f32"]
    assert not [st for st in re.findall(r"\bst\.global(?:\.\w+)*", body) if ".v4." in st]


def test_default_options_would_fuse():
    """The arithmetic check can fail on real PTX: without -fmad=false NVRTC contracts a*b+c into
    fma in the normal kernels."""
    text = compile_ptx("90", tuple(o for o in cuda_cupy.NVRTC_OPTIONS if o != "-fmad=false"))
    assert any(m.startswith("fma.rn.f32") for m in arithmetic_problems(entries(text)["sbf_normal_float32"]))


def test_probe_finds_nvrtc():
    """The backend's own NVRTC check (part of probe()) agrees that NVRTC loads here."""
    _nvrtc()
    ok, version = cuda_cupy.nvrtc_status()
    assert ok and re.fullmatch(r"\d+\.\d+", version), version


@pytest.mark.parametrize("arch", ["90"])
def test_cubin_for_the_device(arch):
    """load_module compiles straight to a cubin for the device's arch (no driver PTX JIT)."""
    _nvrtc()
    cubin = cuda_cupy.compile_kernels(arch, "cubin")
    assert cubin[:4] == b"\x7fELF"
    for name in cuda_cupy.KERNEL_NAMES:
        assert name.encode() in cubin


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc not installed (NVRTC above is the required check)")
def test_nvcc_compiles_too(tmp_path):
    src = tmp_path / "sbf_fill.cu"
    src.write_text(cuda_cupy.kernel_source())
    res = subprocess.run(["nvcc", "-ptx", "-arch=sm_90", *cuda_cupy.NVRTC_OPTIONS, str(src),
                          "-o", str(tmp_path / "k.ptx")], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
