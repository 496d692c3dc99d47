"""Numbers that hold on every machine: the synthetic assets are the same bytes whatever the thread
count and the CPU's instruction set, and the parity and fidelity tests pass with the AVX2 kernels
forced.

Machines differ in their SIMD kernels (AVX2, AVX-512) and thread counts, and both change the last
bits of float results (BLAS blocking, SIMD ``exp``/``sin``, oneDNN convolutions). The generators
are built to absorb that noise (``synthetic.meshops.snap``; the random network is calibrated in
float64 and rounded once to float32), and these tests rebuild the assets in fresh processes under:

* 1 and 2 threads (OpenBLAS, OpenMP);
* numpy's baseline kernels only (every dispatched SIMD feature disabled) and another OpenBLAS
  kernel family (``OPENBLAS_CORETYPE``);
* for torch: the portable ``default`` ATen kernels and oneDNN/MKL capped at AVX2.

The same holds for the synthetic face-appearance files and the random DECA weights.

A numerical test must pass on both kinds of machine; ``test_parity_and_fidelity_with_avx2_kernels``
reruns the float64 parity tests, the face-appearance equivalence tests and the Blender fidelity
tests with the AVX2 kernels forced (``ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2
MKL_CBWR=AVX2``), which is what an AVX2-only machine runs.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
AVX2_KERNELS = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_CBWR": "AVX2"}
NESTED = "PIXIE_NESTED_AVX2_RUN"

_BODY_SCRIPT = """
import hashlib, json, sys, tempfile
from pathlib import Path
from pixie_backend.synthetic.files import write_body_assets
with tempfile.TemporaryDirectory() as d:
    paths = write_body_assets(Path(d), variant=sys.argv[1], seed=3)
    print(json.dumps({n: hashlib.sha256(p.read_bytes()).hexdigest() for n, p in paths.items()}))
"""

_FACE_SCRIPT = """
import hashlib, json, sys, tempfile
from pathlib import Path
from pixie_backend.synthetic import build_body_model
from pixie_backend.synthetic.face_assets import write_face_assets
with tempfile.TemporaryDirectory() as d:
    paths = write_face_assets(Path(d), model=build_body_model(sys.argv[1], 3), seed=3, albedo_resolution=64)
    print(json.dumps({n: hashlib.sha256(p.read_bytes()).hexdigest() for n, p in paths.items()}))
"""

_NET_SCRIPT = """
import json
from pixie_backend.appearance.deca import DecaConfig
from pixie_backend.appearance.deca_random import random_deca_net
from pixie_backend.config import NetConfig
from pixie_backend.nets.random_init import random_pixie_net, state_sha256
print(json.dumps({"net": state_sha256(random_pixie_net(NetConfig.tiny(), seed=11)),
                  "deca": state_sha256(random_deca_net(DecaConfig.tiny(), seed=11))}))
"""


def _threads(n: int) -> dict[str, str]:
    return {"OMP_NUM_THREADS": str(n), "OPENBLAS_NUM_THREADS": str(n), "MKL_NUM_THREADS": str(n)}


def _numpy_baseline() -> dict[str, str]:
    """Environment that makes numpy use its baseline kernels and OpenBLAS another kernel family."""
    from numpy.core import _multiarray_umath as mu

    env = {}
    dispatched = [f for f in mu.__cpu_dispatch__ if mu.__cpu_features__.get(f)]
    if dispatched:
        env["NPY_DISABLE_CPU_FEATURES"] = ",".join(dispatched)
    if platform.machine().lower() in ("x86_64", "amd64"):
        env["OPENBLAS_CORETYPE"] = "Sandybridge"  # AVX without FMA: neither the Haswell nor the AVX-512 kernels
    return env


def _run(script: str, env: dict[str, str], *args: str) -> dict[str, str]:
    full_env = {**os.environ, **env}
    proc = subprocess.run([sys.executable, "-c", script, *args], cwd=ROOT, env=full_env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _assert_same(runs: dict[str, dict[str, str]]) -> None:
    first_name, first = next(iter(runs.items()))
    for name, hashes in runs.items():
        diff = sorted(k for k in first if hashes.get(k) != first[k])
        assert not diff, f"{name} differs from {first_name} in {diff}"


@pytest.mark.parametrize("variant", ["small", pytest.param("full", marks=pytest.mark.slow)])
def test_synthetic_body_files_are_byte_identical(variant):
    runs = {
        "1 thread": _run(_BODY_SCRIPT, _threads(1), variant),
        "2 threads": _run(_BODY_SCRIPT, _threads(2), variant),
        "baseline SIMD": _run(_BODY_SCRIPT, {**_threads(2), **_numpy_baseline()}, variant),
    }
    _assert_same(runs)


@pytest.mark.parametrize("variant", ["small", pytest.param("full", marks=pytest.mark.slow)])
def test_synthetic_face_files_are_byte_identical(variant):
    runs = {
        "1 thread": _run(_FACE_SCRIPT, _threads(1), variant),
        "2 threads": _run(_FACE_SCRIPT, _threads(2), variant),
        "baseline SIMD": _run(_FACE_SCRIPT, {**_threads(2), **_numpy_baseline()}, variant),
    }
    _assert_same(runs)


def test_random_networks_are_bit_identical():
    runs = {
        "1 thread": _run(_NET_SCRIPT, _threads(1)),
        "2 threads": _run(_NET_SCRIPT, _threads(2)),
        "AVX2 kernels": _run(_NET_SCRIPT, {**_threads(2), **AVX2_KERNELS}),
        "portable kernels": _run(_NET_SCRIPT, {**_threads(2), "ATEN_CPU_CAPABILITY": "default",
                                               "MKL_CBWR": "COMPATIBLE"}),
    }
    _assert_same(runs)


def test_snap_is_exact_and_idempotent():
    import numpy as np
    from pixie_backend.synthetic.meshops import SNAP_BITS, snap

    x = np.random.default_rng(0).normal(size=1000) * 3
    s = snap(x)
    assert np.abs(s - x).max() <= 2.0 ** -(SNAP_BITS + 1)
    np.testing.assert_array_equal(snap(s), s)
    assert not np.signbit(snap(np.array([-1e-30, -0.0]))).any()  # no negative zeros: one byte pattern


@pytest.mark.slow
@pytest.mark.skipif(bool(os.environ.get(NESTED)), reason="already the nested AVX2 run")
def test_parity_and_fidelity_with_avx2_kernels():
    """The float64 parity tests (incl. the hash check of the regenerated assets), the face
    appearance's equivalence with upstream and the Blender fidelity tests, rerun in a fresh process
    with the AVX2 kernels forced."""
    tests = ["tests/backend/test_parity_official.py", "tests/backend/test_appearance_official.py"]
    try:
        import bpy  # noqa: F401

        tests.append("tests/blender/test_fidelity.py")
    except ImportError:
        pass
    env = {**os.environ, **AVX2_KERNELS, NESTED: "1"}
    env.pop("PYTEST_ADDOPTS", None)
    cmd = [sys.executable, "-m", "pytest", *tests, "-q", "-p", "no:cacheprovider", "-o", "addopts=-ra"]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=3600)
    out = proc.stdout + proc.stderr
    summary = [ln for ln in out.splitlines() if " passed" in ln or " failed" in ln]
    print(f"AVX2 kernels: {summary[-1] if summary else out[-300:]}")
    assert proc.returncode == 0, out[-6000:]
    assert " passed" in (summary[-1] if summary else "")
