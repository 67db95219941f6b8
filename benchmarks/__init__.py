"""The mesh benchmark suite (`make bench` runs `python -m benchmarks.run_all`)."""
