"""Run every benchmarks/bench_*.py main() in turn (``make bench``).

Each benchmark prints ratios against a reference measured in the same run;
absolute timings on a shared 2-core machine vary by 20-30 %.
"""

from __future__ import annotations

import importlib.util
import sys
import time
from pathlib import Path


def main(selected: list[str]) -> int:
    here = Path(__file__).parent
    failures = 0
    for path in sorted(here.glob("bench_*.py")):
        if selected and not any(s in path.stem for s in selected):
            continue
        print(f"== {path.stem}", flush=True)
        spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(spec)
        tic = time.perf_counter()
        try:
            spec.loader.exec_module(module)
            module.main()
        except Exception as err:  # one failing benchmark must not hide the others
            failures += 1
            print(f"FAILED: {type(err).__name__}: {err}")
        print(f"   ({time.perf_counter() - tic:.0f} s)", flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
