"""The recurrent product's register layouts, each run on this CPU whatever it supports.

fastrnn_recurrent_isa.h is one source instantiated per instruction set; what differs between
the AVX-512, AVX2 and portable versions is only the layout: the vector width (hence the panel
width and the K pass length), the rows per tile and the accumulator budget (hence the panels per
tile, and at B = 1 the matrix-vector blocks). tests/c/check_recurrent_layout.c compiles the same
source with 64-, 32- and 16-byte generic vectors and those constants for the baseline CPU (the
compiler splits a vector the CPU lacks into the ones it has), so the AVX-512 layout's blocking
and edge handling are checked on a machine without AVX-512; the AVX-512 instructions themselves
run only where the CPU has them (test_recurrent_product.py runs every version the CPU supports).
"""

from __future__ import annotations

import shutil
import subprocess
import sysconfig
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "c" / "check_recurrent_layout.c"
INCLUDE = HERE.parent / "src" / "fastrnn"

# (vector bytes, rows per tile, accumulator vectors, matrix-vector accumulators and chains) of
# the AVX-512, AVX2 and portable versions, as fastrnn_recurrent.h instantiates them.
LAYOUTS = {
    "avx512": (64, 12, 24, 28, 16),
    "avx2": (32, 6, 12, 14, 10),
    "portable": (16, 4, 8, 12, 8),
}


def _compiler() -> str | None:
    cc = (sysconfig.get_config_var("CC") or "cc").split()[0]
    path = shutil.which(cc)
    if path is None:
        return None
    version = subprocess.run([path, "--version"], capture_output=True, text=True).stdout
    return (
        path
        if (
            "gcc" in version.lower()
            or "clang" in version.lower()
            or "free software foundation" in version.lower()
        )
        else None
    )


@pytest.mark.parametrize("name", list(LAYOUTS))
def test_layout_matches_a_naive_product(name, tmp_path):
    cc = _compiler()
    if cc is None:
        pytest.skip("needs GCC or Clang (vector extensions)")
    vec_bytes, rows, accumulators, mv_accumulators, mv_chains = LAYOUTS[name]
    exe = tmp_path / f"check_{name}"
    build = subprocess.run(
        [
            cc,
            "-O1",
            f"-DVEC_BYTES={vec_bytes}",
            f"-DMR={rows}",
            f"-DACC={accumulators}",
            f"-DMV_MAX={mv_accumulators}",
            f"-DMV_CHAINS={mv_chains}",
            f"-I{INCLUDE}",
            "-Wno-psabi",
            str(SOURCE),
            "-o",
            str(exe),
            "-lm",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert build.returncode == 0, build.stderr
    run = subprocess.run([str(exe)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "shapes; worst relative error" in run.stdout
    assert "outer sum:" in run.stdout
