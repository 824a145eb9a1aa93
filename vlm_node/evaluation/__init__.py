"""Evaluating the whole system on recorded bags (`vlm-node eval`).

The modules are small and layered so each can be tested on hand-made data:

- `labels`: the bag's labels.json (the shared format plus `topic` and `stamp_ns` per image);
- `records`: what the system produced for each image message (`FrameRecord`), from the offline
  replay (`replay`) or from the real node over DDS (`live`);
- `matching`: readings against labelled signs, one frame at a time;
- `metrics`: the figures (sign P/R/F1, speed values, tracks, anonymization, latency, coverage);
- `report` / `plots`: report.json, report.md, PNG plots and the `--compare` table.
"""
