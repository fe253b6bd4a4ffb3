"""The loader benchmark as a script; the same as ``mmbook bench loader`` (all flags pass through).

    python benchmarks/bench_loader.py                      # one epoch each way, full training set
    python benchmarks/bench_loader.py --baseline-images 10000 --json /tmp/bench.json
"""

import sys

from mmbook.cli import main

if __name__ == "__main__":
    raise SystemExit(main(["bench", "loader", *sys.argv[1:]]))
