"""Every CUDA kernel compiles with NVRTC for sm_80 and sm_90 with the production options.

Uses CuPy's NVRTC bindings and the nvidia-cuda-nvrtc wheel, which need no GPU and no driver
(.ci/run installs both). The PTX is then inspected: the options must have removed every fused
multiply-add and kept IEEE division and square root, which is what makes the device's bits the
reference's bits (the host emulation in test_cuda_host.py proves the arithmetic itself).
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


def test_every_kernel_compiles(ptx):
    arch, text = ptx
    assert f".target sm_{arch}" in text
    entries = set(re.findall(r"\.entry\s+(\w+)", text))
    assert entries == set(cuda_cupy.KERNEL_NAMES), entries ^ set(cuda_cupy.KERNEL_NAMES)


def test_no_fma_and_ieee_div_sqrt(ptx):
    _, text = ptx
    assert not re.search(r"\bfma\.", text), "a fused multiply-add survived -fmad=false"
    assert not re.search(r"\bmad\.(rn\.)?f(32|64)", text)
    assert not re.search(r"\.approx\.|\.ftz\b|div\.full", text), "non-IEEE division/sqrt or flush-to-zero"
    assert re.search(r"\bdiv\.rn\.f32", text) and re.search(r"\bsqrt\.rn\.f32", text)
    assert re.search(r"\bdiv\.rn\.f64", text) and re.search(r"\bsqrt\.rn\.f64", text)
    assert re.search(r"st\.global\.v4", text), "the 16-byte vector stores are missing"


def test_default_options_would_fuse():
    """The check above can fail: without -fmad=false NVRTC does contract a*b+c into fma."""
    text = compile_ptx("90", tuple(o for o in cuda_cupy.NVRTC_OPTIONS if o != "-fmad=false"))
    assert re.search(r"\bfma\.rn\.f32", text)


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
