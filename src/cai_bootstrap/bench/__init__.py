"""`cai-bootstrap bench`: the pipeline's hot paths and its real work against the libraries a
user would reach for and the roofline (`core`, `workload`), run in one process (`run`), kept
per machine for `plan` (`cache`)."""

from cai_bootstrap.bench.cache import cache_path, fingerprint, load_cached, machine, save_cached
from cai_bootstrap.bench.run import bench_table, run_bench, save
from cai_bootstrap.bench.settings import BenchSettings, Figure

__all__ = ["BenchSettings", "Figure", "bench_table", "cache_path", "fingerprint", "load_cached", "machine",
           "run_bench", "save", "save_cached"]
