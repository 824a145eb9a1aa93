"""Time chunks without Ray: how a bag is cut (boundaries, warm-up windows), and one chunk task
run in this process and merged back (`run_chunk`, `merge_chunk`), including the checks that
refuse a chunk bag that does not match its output."""
import math

import pytest

from bag_helpers import read_all
from vlm_node.anonymize import AnonymizerConfig
from vlm_node.bags import io
from vlm_node.bags.anonymize import anonymize_bag, open_output, select
from vlm_node.bags.chunks import (LOOKBACK_FACTOR, Chunk, ChunkTask, check_chunking,
                                  default_warmup_frames, merge_chunk, plan_chunks, run_chunk)
from vlm_node.tools.sample_bag import START_NS, write_sample_bag
from vlm_node.errors import BagError, ConfigError

SIZE = (160, 120)
S = 1_000_000_000


@pytest.fixture(scope="module")
def bag_path(tmp_path_factory):
    """16 frames at 10 Hz on 2 cameras (the second offset by 25 ms): log times 0 .. 1.525 s."""
    path = tmp_path_factory.mktemp("chunks") / "in"
    write_sample_bag(path, 16, 2, 1.6, "mcap", SIZE, seed=4)
    return path


def _plan(path, seconds, warmup=8, topics=None):
    with io.open_bag(path) as bag:
        return plan_chunks(bag, select(bag, topics, None, None), seconds, warmup)


def test_chunks_cover_the_bag_without_overlap(bag_path):
    chunks = _plan(bag_path, 0.5)
    assert [(c.index, c.count) for c in chunks] == [(i, 4) for i in range(4)]
    assert [c.start_ns for c in chunks] == [None, START_NS + S // 2, START_NS + S,
                                            START_NS + 3 * S // 2]
    assert [c.stop_ns for c in chunks] == [START_NS + S // 2, START_NS + S,
                                           START_NS + 3 * S // 2, None]
    # look-back: 2 x 8 frames x the mean period (1.525 s / 15 frames) reaches the bag's start
    assert [c.warmup_from_ns for c in chunks] == [None, START_NS, START_NS, START_NS]
    lookback = math.ceil(LOOKBACK_FACTOR * 2 * 1_525_000_000 / 15)  # with 2 warm-up frames
    assert [c.warmup_from_ns for c in _plan(bag_path, 0.5, warmup=2)] == [
        None, START_NS + S // 2 - lookback, START_NS + S - lookback,
        START_NS + 3 * S // 2 - lookback]
    assert chunks[3].describe(START_NS) == "chunk 4/4 (1.5-end)"
    assert chunks[0].describe(START_NS) == "chunk 1/4 (start-0.5 s)"


def test_one_chunk_and_no_warmup(bag_path):
    assert _plan(bag_path, 1.525 + 1e-3) == [Chunk(0, 1, None, None, None)]
    cut = START_NS + 1_525_000_000  # the last message starts a chunk of its own
    assert _plan(bag_path, 1.525) == [Chunk(0, 2, None, cut, None),
                                      Chunk(1, 2, cut, None, START_NS)]
    assert all(c.warmup_from_ns is None for c in _plan(bag_path, 0.5, warmup=0))
    assert default_warmup_frames(AnonymizerConfig()) == 8
    assert default_warmup_frames(AnonymizerConfig(carry_frames=0)) == 2


@pytest.mark.parametrize("seconds,warmup,match", [
    (0, 8, "--chunk-seconds"), (float("nan"), 8, "--chunk-seconds"),
    (True, 8, "--chunk-seconds"), (1.0, -1, "--warmup-frames"), (1.0, 1.5, "--warmup-frames")])
def test_bad_chunking_is_refused(seconds, warmup, match):
    with pytest.raises(ConfigError, match=match):
        check_chunking(seconds, warmup)


def _task(bag_path, out, chunk, warmup=8):
    with io.open_bag(bag_path) as bag:
        selection = select(bag, None, None, None)
    return ChunkTask(str(bag_path), str(out), chunk, selection,
                     AnonymizerConfig(parallel_stages=False), warmup)


def _merge(bag_path, results, out):
    with io.open_bag(bag_path) as bag, io.BagWriter(out, "mcap") as writer:
        output = open_output(bag, writer, select(bag, None, None, None))
        return [merge_chunk(r, output) for r in results]


def test_chunks_run_here_and_merged_equal_the_whole_run(bag_path, tmp_path):
    whole = tmp_path / "whole"
    anonymize_bag(bag_path, whole, AnonymizerConfig(parallel_stages=True), progress=False)
    chunks = _plan(bag_path, 0.5)
    leftover = tmp_path / "c1"
    leftover.mkdir()
    (leftover / "junk").write_text("a task whose worker died left this")
    results = [run_chunk(_task(bag_path, tmp_path / f"c{c.index}", c)) for c in chunks]
    assert [r.summary.frames for r in results] == [10, 10, 10, 2]
    assert [r.summary.warmup_frames for r in results] == [0, 10, 16, 16]
    assert _merge(bag_path, results, tmp_path / "merged") == [
        r.summary.messages_written for r in results]
    assert [(m.topic, m.timestamp, m.raw) for m in read_all(tmp_path / "merged")] == \
        [(m.topic, m.timestamp, m.raw) for m in read_all(whole)]


def test_merge_refuses_a_chunk_bag_that_does_not_match(bag_path, tmp_path):
    result = run_chunk(_task(bag_path, tmp_path / "c0", _plan(bag_path, 0.5)[0]))
    with io.open_bag(bag_path) as bag, io.BagWriter(tmp_path / "other", "mcap") as writer:
        output = open_output(bag, writer, select(bag, ("/front/image_raw",), None, None))
        with pytest.raises(BagError, match="do not match"):
            merge_chunk(result, output)
    wrong = type(result)(result.task, result.summary, result.host, result.pid, result.started,
                         result.finished)
    wrong.summary.copied["/tf"] += 1  # the task claims one more message than its bag holds
    with pytest.raises(BagError, match="its task wrote"):
        _merge(bag_path, [wrong], tmp_path / "merged")
