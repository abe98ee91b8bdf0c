"""Declares and cythonizes the compiled kernel; all metadata lives in pyproject.toml.

Build switches (environment variables, all off by default):
  FASTRNN_DEBUG=1   bounds/wraparound/initialized checks back on inside the kernel (for tests).
  FASTRNN_NATIVE=1  compile with -march=native (faster, not portable to other CPUs).
Without FASTRNN_NATIVE the elementwise loops still use AVX2/AVX-512 where the CPU has them,
chosen at run time (GCC target_clones), and so does the recurrent product (fastrnn_recurrent.h,
chosen from the CPU's features at import), so the default build stays portable. The kernel is
compiled with OpenMP: recurrences can be shared among threads (set_recurrent_threads).
"""

import os
import sys

from Cython.Build import cythonize
from setuptools import Extension, setup

debug = os.environ.get("FASTRNN_DEBUG", "") not in ("", "0")
native = os.environ.get("FASTRNN_NATIVE", "") not in ("", "0")

# -fno-trapping-math: nothing here reads floating-point exception flags, and without it GCC
# keeps the clamps and selects of the exp / tanh / sigmoid loops (fastrnn_simd.h,
# fastrnn_gates.h) as branches and leaves those loops scalar.
# OpenMP: GCC and clang on Linux take -fopenmp; MSVC /openmp; Apple's clang needs libomp
# (`brew install libomp`) through -Xpreprocessor, with Homebrew's prefix on the search paths.
include_dirs = ["src/fastrnn"]
library_dirs: list[str] = []
if sys.platform == "win32":
    compile_args, link_args = ["/openmp"], []
elif sys.platform == "darwin":
    compile_args = ["-O3", "-fno-math-errno", "-fno-trapping-math", "-Xpreprocessor", "-fopenmp"]
    link_args = ["-lomp"]
    for prefix in ("/opt/homebrew/opt/libomp", "/usr/local/opt/libomp"):
        if os.path.isdir(prefix):
            include_dirs.append(f"{prefix}/include")
            library_dirs.append(f"{prefix}/lib")
else:
    compile_args = ["-O3", "-fno-math-errno", "-fno-trapping-math", "-fopenmp"]
    link_args = ["-fopenmp"]
if native and sys.platform != "win32":
    compile_args.append("-march=native")

directives = {
    "language_level": "3",
    "boundscheck": debug,
    "wraparound": debug,
    "initializedcheck": debug,
    "cdivision": True,
    "embedsignature": True,
}

extensions = [
    Extension(
        "fastrnn._kernel",
        sources=["src/fastrnn/_kernel.pyx"],
        include_dirs=include_dirs,
        library_dirs=library_dirs,
        extra_compile_args=compile_args,
        extra_link_args=link_args,
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
    ),
]

# cythonize regenerates the C file only when a source is newer than it, not when a directive
# changes; the debug build writes its C file apart, so switching modes never reuses the other's.
setup(
    ext_modules=cythonize(
        extensions,
        compiler_directives=directives,
        build_dir="build/cython-debug" if debug else None,
    )
)
