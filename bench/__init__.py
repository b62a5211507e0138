"""keyless benchmarks: keyless against pypiserver, devpi-server and nginx, side by side.

Run with `python -m bench` (or `make bench`); see bench/README.md. Nothing here is imported by
keyless or its tests.
"""
