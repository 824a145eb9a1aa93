"""`vlm-node bench`: benchmarks that print figures (frames/s, latency percentiles, ratios
against a baseline measured in the same process). Never used as pass/fail tests."""
from __future__ import annotations

import argparse

from vlm_node.cli.bench_analyze import add_analyze_parser
from vlm_node.cli.bench_anonymize import add_anonymize_parser
from vlm_node.cli.bench_node import add_node_parser
from vlm_node.cli.bench_signs import add_signs_parser


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="benchmarks: anonymizer, analysis backends, node overhead, "
                                     "sign stage",
                       description="Measure speed (and, for the anonymizer, recall) and print "
                                   "tables; --output writes the figures as JSON.")
    bench_sub = p.add_subparsers(dest="bench", metavar="TARGET", required=True)
    add_anonymize_parser(bench_sub)
    add_analyze_parser(bench_sub)
    add_node_parser(bench_sub)
    add_signs_parser(bench_sub)
