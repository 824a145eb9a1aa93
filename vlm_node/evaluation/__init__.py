"""The scoring home: every figure measured against labels, for photo sets and recorded bags
(`vlm-node eval`, `anonymize --labels`, `anonymize-bag --labels`, `analyze --labels`, the
benchmarks). Nothing of the runtime (anonymize/, analysis/, bags/, the node) imports it.

The modules are small and layered so each can be tested on hand-made data:

- `labels`: the one labels.json reader (docs/labels.md), photo sets and bags
  (`topic` and `stamp_ns` per image);
- `redaction`: faces and plates against labels (recall, precision, leak rate);
- `composite`: street-like frames built from labelled photos, for the anonymizer benchmark;
- `signs`: a sign reader's tables per class and sign size on a labelled image set;
- `records`: what the system produced for each image message (`FrameRecord`), from the offline
  replay (`replay`) or from the real node over DDS (`live`);
- `matching`: the one box-pairing and sign-matching rule, and the join of records and labels;
- `metrics`: the figures (sign P/R/F1, speed values, tracks, anonymization, latency, coverage);
- `report` / `plots`: report.json, report.md, PNG plots and the `--compare` table.
"""
