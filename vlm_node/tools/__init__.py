"""Tooling, kept apart from the runtime: synthetic scenes and sample bags (`render`,
`sample_bag`), benchmarks (`bench_analyze`, `bench_node`, `echo_node`), process harnesses that
run the node and play frames into it (`process`, `player`), and training (`train_signs`).

The runtime (the node, `anonymize/`, `analysis/`, `bags/`, `ros/`, the core modules) imports
none of this (tests/test_layers.py checks it); the `vlm-node` subcommands, `evaluation/` and
the tests do.
"""
