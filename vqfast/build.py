"""``python -m vqfast.build [--verbose]``: compile vqfast's C++ ops now instead of at first use."""

from __future__ import annotations

import argparse
import time


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--verbose", action="store_true", help="show the compiler's output")
    args = parser.parse_args(argv)
    from vqfast.ops import _extension, backends

    start = time.perf_counter()
    _extension.load(verbose=args.verbose)
    seconds = time.perf_counter() - start
    print(f"vqfast C++ ops ready ({_extension.extension_name()}, {seconds:.1f} s)")
    for op, impl in backends("cpu").items():
        print(f"  {op:<22} cpu: {impl}")


if __name__ == "__main__":
    main()
