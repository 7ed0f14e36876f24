"""aioloop's benchmarks: `python -m bench [--quick]`."""
