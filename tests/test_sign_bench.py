"""`vlm-node bench analyze --backends ocr` times the sign stage without building what only
the VLM figures need (the reference tokenizer is trained on the stdlib: tens of seconds)."""

from vlm_node.tools import bench_analyze as bench


def test_ocr_only_bench_does_not_train_the_reference_tokenizer(monkeypatch):
    def no_tokenizer(*args, **kwargs):
        raise AssertionError("the tokenizer was built for an ocr-only benchmark")

    timed = []
    monkeypatch.setattr(bench, "reference_tokenizer", no_tokenizer)
    monkeypatch.setattr(bench, "bench_frames", lambda count, size: [])
    monkeypatch.setattr(bench, "_bench_simple",
                        lambda name, *args: timed.append(name) or {1: {"ms_per_frame": 1.0}})
    figures = bench.bench_analyze(cameras=(1,), backends=("ocr",), device="cpu",
                                  frame_size=(64, 48), print_fn=lambda line: None)
    assert timed == ["ocr"] and figures["ocr"] == {1: {"ms_per_frame": 1.0}}
    assert "answer_tokens" not in figures


def test_transformers_bench_still_counts_answer_tokens(monkeypatch):
    monkeypatch.setattr(bench, "reference_tokenizer", lambda *a, **k: "tok")
    monkeypatch.setattr(bench, "answer_token_counts", lambda tok: {"example_answer": 3})
    monkeypatch.setattr(bench, "bench_frames", lambda count, size: [])
    monkeypatch.setattr(bench, "_bench_arch", lambda arch, *args: {"arch": arch})
    figures = bench.bench_analyze(archs=("smolvlm-256m",), cameras=(1,),
                                  backends=("transformers",), device="cpu",
                                  frame_size=(64, 48), print_fn=lambda line: None)
    assert figures["answer_tokens"] == {"example_answer": 3}
    assert figures["transformers"] == {"smolvlm-256m": {"arch": "smolvlm-256m"}}
