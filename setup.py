"""Builds the one C extension: the WAL's record scan and packing (`src/tezzeret/wal/_scan.c`).

Everything else about the package is in pyproject.toml. The extension is optional: where it cannot
be built (no compiler, no OpenSSL headers), the install still succeeds and recovery runs the same
checks in Python, more slowly (and the writer packs records in Python).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "tezzeret.wal._scan",
            ["src/tezzeret/wal/_scan.c"],
            libraries=["crypto"],
            extra_compile_args=["-O2"],
            optional=True,
        )
    ]
)
