"""Compile every Triton kernel for an NVIDIA GPU (sm_90) on a machine without one.

    TRITON_INTERPRET=0 python tests/compile_kernels.py

Run by ``tests/test_triton_compile.py`` in a subprocess: the interpreter that the other tests use
must be off when the kernels are imported. Triton compiles to PTX and a cubin (with the ``ptxas``
its wheel ships) without a GPU, so errors that the interpreter cannot show (the frontend's typing
and scoping rules, code generation) show here. Also checks the generated PTX: no TF32 or
half-precision matrix instructions anywhere, and no contracted multiply-add in the float32
forward kernels, whose distances must round identically everywhere (``kernels/_helpers.py``
says why).
Prints one line per compiled variant; exits 1 on the first failure.
"""

from __future__ import annotations

import inspect
import os
import sys

os.environ["TRITON_INTERPRET"] = "0"

import triton  # noqa: E402
import triton.language as tl  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.compiler import ASTSource  # noqa: E402

from vqfast.kernels import (  # noqa: E402
    _helpers,
    code_histogram,
    extract_subsequence,
    nearest_code,
    vq_loss,
)

TARGET = GPUTarget("cuda", 90, 32)
ACC = {"fp32": tl.float32, "fp64": tl.float64}
INPUTS = {"z_ptr", "c_ptr", "x_ptr", "t_ptr", "l_ptr", "out_ptr", "gz_ptr", "grad_ptr", "gt_ptr",
          "gl_ptr"}


def signature(kernel, acc: str, inputs: str, constexprs: dict) -> tuple[dict, dict]:
    """Argument types from the parameter names: ``*idx*``/``*hist*`` pointers are int64, the
    inputs' pointers have the input dtype, other pointers the accumulate dtype, the rest i32."""
    sig, values = {}, {}
    for name in inspect.signature(kernel.fn).parameters:
        if name == "ACC" or name in constexprs:
            sig[name] = "constexpr"
            values[name] = ACC[acc] if name == "ACC" else constexprs[name]
        elif name.endswith("_ptr"):
            if "idx" in name or "hist" in name:
                sig[name] = "*i64"
            else:
                sig[name] = "*" + (inputs if name in INPUTS else acc)
        else:
            sig[name] = "i32"
    return sig, values


def compile_variant(kernel, acc="fp32", inputs=None, no_fma=False, **constexprs):
    sig, values = signature(kernel, acc, inputs or acc, constexprs)
    compiled = triton.compile(ASTSource(fn=kernel, signature=sig, constexprs=values),
                              target=TARGET,
                              options={"enable_fp_fusion": _helpers.FP_FUSION})
    ptx = compiled.asm["ptx"]
    assert "tf32" not in ptx, "TF32 instructions in the PTX"
    matrix = [line for line in ptx.splitlines() if "mma" in line]
    assert not any("f16" in line for line in matrix), "half-precision matrix instructions"
    if no_fma:
        # Contraction shows as fma.rn.f32; libdevice's exp/log polynomials use fma.rn.ftz.f32.
        assert "fma.rn.f32" not in ptx, "fused multiply-add in a distance kernel"
    print(f"ok {kernel.fn.__name__} acc={acc} inputs={inputs or acc} {constexprs}", flush=True)


def main() -> int:
    for acc, inputs in (("fp32", "fp32"), ("fp64", "fp64"), ("fp32", "bf16"), ("fp32", "fp16")):
        block_m = 64 if acc == "fp32" else 32
        dot = fp32 = acc == "fp32"
        compile_variant(nearest_code._nearest_code_kernel, acc, inputs, no_fma=fp32,
                        BLOCK_M=block_m, BLOCK_K=64)
        for entropy in (True, False):
            compile_variant(vq_loss._forward_rows_kernel, acc, inputs, no_fma=fp32,
                            ENTROPY=entropy, BLOCK_M=block_m, BLOCK_K=64)
            for block_d in (16, 64):
                blocks = dict(BLOCK_M=16, BLOCK_K=16 if dot else 4, BLOCK_D=block_d)
                for kernel in (vq_loss._backward_rows_kernel, vq_loss._backward_codes_kernel):
                    compile_variant(kernel, acc, inputs, ENTROPY=entropy, DOT=dot, **blocks)
        compile_variant(vq_loss._forward_codes_kernel, acc, inputs, no_fma=fp32,
                        BLOCK_M=block_m, BLOCK_K=64)
        for smooth in (1, 5):
            compile_variant(extract_subsequence._forward_kernel, acc, inputs, SMOOTH=smooth,
                            BLOCK_T=16, BLOCK_S=128)
            compile_variant(extract_subsequence._backward_kernel, acc, inputs, SMOOTH=smooth,
                            BLOCK_T=16, BLOCK_S=128, BLOCK_P=2 if smooth > 1 else 1)
    compile_variant(code_histogram._code_histogram_kernel, BLOCK_N=1024)
    return 0


if __name__ == "__main__":
    sys.exit(main())
