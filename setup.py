"""The compiled row store (``ps.server._rowstore``); everything else is in pyproject.toml.

``pip install -e .`` (``make setup``) builds it with the system's C++ compiler; pybind11 comes
from the build requirements.
"""

from pybind11.setup_helpers import Pybind11Extension
from setuptools import setup

setup(
    ext_modules=[
        Pybind11Extension(
            "ps.server._rowstore",
            ["ps/server/native/rowstore.cpp"],
            cxx_std=17,
            # Portable code (no -march=native): a cluster's nodes may differ from the build host.
            extra_compile_args=["-O3", "-fno-math-errno"],
        )
    ],
)
