"""Prints a Markdown table of finished run directories (result.json + metrics.jsonl).

    python bench/summarize.py RUN_DIR [RUN_DIR ...]
"""
import json
import os
import statistics
import sys


def _median_images_per_sec(run):
    path = os.path.join(run, "metrics.jsonl")
    if not os.path.exists(path):
        return None
    rates = [json.loads(line).get("images_per_sec") for line in open(path) if line.strip()]
    rates = [r for r in rates[1:] or rates if r]  # the first epoch includes tracing
    return statistics.median(rates) if rates else None


def main(runs):
    print("| run | test accuracy | teacher accuracy | params | compression | "
          "images/s (median epoch) |")
    print("|---|---|---|---|---|---|")
    for run in runs:
        path = os.path.join(run, "result.json")
        if not os.path.exists(path):
            print(f"| {run} | (not finished) | | | | |")
            continue
        r = json.load(open(path))
        fmt = lambda v, f: f.format(v) if isinstance(v, (int, float)) else "–"  # noqa: E731
        print(f"| {os.path.basename(os.path.normpath(run))} | "
              f"{fmt(r.get('test_accuracy'), '{:.4f}')} | "
              f"{fmt(r.get('teacher_test_accuracy'), '{:.4f}')} | "
              f"{fmt(r.get('trainable_params'), '{:,}')} | "
              f"{fmt(r.get('compression_ratio'), '{:.2f}x')} | "
              f"{fmt(_median_images_per_sec(run), '{:.0f}')} |")


if __name__ == "__main__":
    main(sys.argv[1:])
