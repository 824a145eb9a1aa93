"""Make the spatial input size of a fully convolutional ONNX detector dynamic.

Several face detectors are exported with a fixed input (YuNet: 1x3x640x640) although every
operator in them works at any size (convolutions, pooling, resizes by scale factors, reshapes
to -1). onnxruntime checks inputs against the declared shape, so such a model can only be fed
tiles of that size; with the height and width declared symbolic it takes a whole frame in one
pass (YuNet on a 1280x720 view: one run instead of six tiles, measured 2x faster on 1080p
frames in docs/anonymizer.md).

This is how the shipped `*_dynamic.onnx` files were made (vlm_node/assets/models/ATTRIBUTION.md).
It needs the `onnx` package, which is not a runtime dependency of vlm_node:

    pip install onnx==1.23.2
    python scripts/make_dynamic_onnx.py IN.onnx OUT.onnx

Weights are not touched: only the declared shapes of the graph's input and outputs change,
stale intermediate shape annotations are dropped, and initializers listed as graph inputs (an
old exporter habit that stops onnxruntime from folding them) are removed from the inputs.
"""
from __future__ import annotations

import argparse
import hashlib
from pathlib import Path


def make_dynamic(src: Path, dst: Path) -> str:
    """Write `src` with symbolic batch/height/width to `dst`; return the sha256 of `dst`."""
    import onnx  # only needed to derive the model files, not to run them

    model = onnx.load(str(src))
    graph = model.graph
    weights = {init.name for init in graph.initializer}
    inputs = [i for i in graph.input if i.name not in weights]
    del graph.input[:]
    graph.input.extend(inputs)
    if len(inputs) != 1:
        raise SystemExit(f"{src}: expected one image input, found {[i.name for i in inputs]}")
    dims = graph.input[0].type.tensor_type.shape.dim  # the copy now in the graph
    if len(dims) != 4:
        raise SystemExit(f"{src}: expected an NCHW input, got rank {len(dims)}")
    for axis, name in ((0, "batch"), (2, "height"), (3, "width")):
        dims[axis].Clear()
        dims[axis].dim_param = name
    for out in graph.output:
        for axis, dim in enumerate(out.type.tensor_type.shape.dim):
            if axis == len(out.type.tensor_type.shape.dim) - 1 and dim.HasField("dim_value") \
                    and len(out.type.tensor_type.shape.dim) == 3:
                continue  # per-cell values (box, landmarks) keep their count
            dim.Clear()
            dim.dim_param = f"{out.name}_{axis}"
    del graph.value_info[:]
    onnx.checker.check_model(model)
    onnx.save(model, str(dst))
    return hashlib.sha256(dst.read_bytes()).hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("src", type=Path, help="ONNX file with a fixed input size")
    parser.add_argument("dst", type=Path, help="where to write the dynamic copy")
    args = parser.parse_args()
    print(f"{args.dst}: sha256 {make_dynamic(args.src, args.dst)}")


if __name__ == "__main__":
    main()
