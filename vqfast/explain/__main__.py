"""``python -m vqfast.explain --model DIR --dataset NAME [--samples i j ...] --output-dir OUT``:
writes ``OUT/explain.json`` and the figures (``OUT/explain_*.png``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from vqfast.inputs import PAD_MODES


def parse(argv=None) -> argparse.Namespace:
    from vqfast.explain.faithfulness import DEFAULT_DRAWS, DEFAULT_FRACTION
    from vqfast.explain.shapes import DEFAULT_THRESHOLD, METRICS

    parser = argparse.ArgumentParser(
        prog="python -m vqfast.explain",
        description="What a saved VQShape model's codes mean and why series get their class: "
                    "distinct shapes, class attribution from the histogram probe, explained "
                    "samples and a deletion test of the attribution.",
    )
    parser.add_argument("--model", required=True, help="folder written by save_pretrained")
    parser.add_argument("--dataset", required=True, help="dataset name or path (vqfast.data)")
    parser.add_argument("--output-dir", required=True, help="where explain.json and PNGs go")
    parser.add_argument("--samples", type=int, nargs="+",
                        help="indices into the test split (train without one) to explain; "
                             "default: the first sample of each class")
    parser.add_argument("--how", choices=PAD_MODES, default="pad")
    parser.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD,
                        help="distance below which code shapes merge (default %(default)s)")
    parser.add_argument("--metric", choices=METRICS, default="correlation")
    parser.add_argument("--top", type=int, default=6, help="top codes per class")
    parser.add_argument("--fraction", type=float, default=DEFAULT_FRACTION,
                        help="share of each sample's tokens the deletion test removes")
    parser.add_argument("--draws", type=int, default=DEFAULT_DRAWS,
                        help="random deletion orders per sample")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse(argv)
    model_dir = Path(args.model)
    if not (model_dir / "config.json").is_file():
        print(f"vqfast.explain: {model_dir} is not a saved model (no config.json there); give "
              "the folder written by save_pretrained, e.g. runs/BasicMotions/model",
              file=sys.stderr)
        return 2

    from vqfast import VQShape
    from vqfast.data import DataError, load_dataset
    from vqfast.explain.run import explain
    from vqfast.fileio import atomic_write_json

    model = VQShape.from_pretrained(model_dir)
    try:
        data = load_dataset(args.dataset, length=model.len_input, how=args.how)
        result = explain(model, data, args.output_dir, samples=args.samples,
                         threshold=args.threshold, metric=args.metric, top=args.top,
                         fraction=args.fraction, draws=args.draws, seed=args.seed,
                         progress=sys.stderr.isatty())
    except (DataError, ValueError, TypeError) as err:
        print(f"vqfast.explain: {err}", file=sys.stderr)
        return 2
    result["model"] = str(model_dir)
    path = atomic_write_json(Path(args.output_dir) / "explain.json", result)
    f = result["faithfulness"]
    ratio = "n/a" if f["ratio"] is None else f"{f['ratio']:.2f}"
    print(f"{data.name}: {result['distinct_shapes']['summary']}")
    print(f"  deletion test: attributed AOPC {f['attributed_aopc']:.3f}, random "
          f"{f['random_aopc']:.3f}, ratio {ratio} ({f['samples']} samples, first {f['steps']} "
          f"of {f['tokens_per_sample']} tokens)")
    for s in result["samples"]:
        print(f"  {s['text']}")
    print(f"  wrote {path} and {len(result['images'])} figures")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
