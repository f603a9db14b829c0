"""Shared test settings: keep torch and Inductor off the developer's real caches and cores."""

from __future__ import annotations

import os

# Pin the CPU ISA so artifacts built in one test process load in another (notes: -march=native trap).
os.environ.setdefault("TORCHINDUCTOR_CPP_MARCH", "x86-64-v3")
os.environ.setdefault("ATEN_CPU_CAPABILITY", "avx2")
os.environ.setdefault("OMP_NUM_THREADS", "1")
