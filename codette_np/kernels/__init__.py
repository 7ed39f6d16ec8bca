"""Kernel backends: `ref` (NumPy, the oracle), `cbackend` (C via cffi), `numba_backend`.

Pick one through codette_np.backend, never by importing these directly.
"""
