"""Triton kernels of vqfast (installed as ``vqfast.kernels``): one module per op.

Each module holds the ``@triton.jit`` kernels and the launchers that pick block sizes; the ops in
``vqfast.ops`` call them. On CPU tensors they run only under ``TRITON_INTERPRET=1``.
"""
