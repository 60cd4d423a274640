"""Same as `cai-bootstrap bench`: python benchmarks/bench.py [--quick] [--model M] [--out bench.json]."""

from cai_bootstrap.cli import app

if __name__ == "__main__":
    import sys

    app(["bench", *sys.argv[1:]])
