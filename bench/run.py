"""Run every ``bench/bench_*.py`` module's ``main()`` in one process, in name order.

Usage: ``python bench/run.py [NAME-SUBSTRING ...]`` (no argument: all of them).
Each benchmark prints ratios against baselines measured in this same run.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    here = Path(__file__).resolve().parent
    modules = sorted(here.glob("bench_*.py"))
    chosen = [m for m in modules if not argv or any(a in m.stem for a in argv)]
    if not chosen:
        print(f"no benchmark matches {argv}; have: {[m.stem for m in modules]}", file=sys.stderr)
        return 2
    failed = 0
    for path in chosen:
        spec = importlib.util.spec_from_file_location(path.stem, path)
        if spec is None or spec.loader is None:
            raise ImportError(f"cannot load benchmark {path}")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        print(f"\n=== {path.stem} ===", flush=True)
        failed += 0 if module.main() == 0 else 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
