"""`anonymize_bags_ray` / `anonymize-bag --ray`: bags cut into time chunks, anonymized as Ray
tasks and merged by the driver give the single-process output message for message (images
byte-identical thanks to the warm-up; without it exactly the frame after a cut differs where a
region was carried), several bags in one call, a failed chunk fails its bag with nothing left.

One local Ray cluster (2 CPUs, no dashboard) serves the whole module: starting Ray takes a few
seconds. Ray is a pinned runtime dependency, so nothing here is skipped."""
import json
import logging
import os
import shutil

import numpy as np
import pytest
import ray
from mcap.reader import make_reader

from bag_helpers import box_change, connections, images, portrait, read_all, write_bag
from vlm_node.anonymize import AnonymizerConfig
from vlm_node.bags import io
from vlm_node.bags.anonymize import anonymize_bag
from vlm_node.bags.batch import AnonymizeOptions, BagJob
from vlm_node.bags.ray_runner import (ClusterError, RayOptions, anonymize_bags_ray, connect,
                                      worker_config)
from vlm_node.tools.sample_bag import write_sample_bag
from vlm_node.cli import main as cli_main
from vlm_node.errors import ConfigError
from vlm_node.evaluation.labels import load_bag_labels
from vlm_node.evaluation.redaction import BagRedactionScorer

pytestmark = pytest.mark.ray

SIZE = (320, 240)
PERIOD_NS = 100_000_000  # 10 Hz
RESULTS = "/anonymization"


@pytest.fixture(scope="module", autouse=True)
def cluster():
    """The module's local Ray cluster; the runner finds it connected and leaves it running."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # CI must not try to phone home
    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING,
             log_to_driver=False)
    yield
    ray.shutdown()


def _run(jobs, root=None, config=None, progress=False, labels=None, **ray_options):
    return anonymize_bags_ray(jobs, root, AnonymizeOptions(config or AnonymizerConfig(),
                                                           results_topic=RESULTS,
                                                           labels=labels),
                              RayOptions(**ray_options), progress=progress)


def _messages(path):
    """(topic, log time, stored bytes) of every message but the results topic, whose
    `latency_ms` is a measured time."""
    return [(m.topic, m.timestamp, m.raw) for m in read_all(path) if m.topic != RESULTS]


def _results(path):
    with io.open_bag(path) as bag:
        return [(m.timestamp, msg.camera, io.stamp_ns(msg.header), msg.faces_redacted,
                 msg.plates_redacted) for m in bag.messages([RESULTS])
                for msg in [bag.deserialize(m)]]


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    """A 2-camera bag (raw Image + JPEG CompressedImage, /tf, /tf_static) of 1.6 s at 10 Hz,
    anonymized whole in this process and in 4 chunks of 0.5 s on Ray."""
    root = tmp_path_factory.mktemp("ray")
    labels = BagRedactionScorer(load_bag_labels(
        write_sample_bag(root / "in", 16, 2, 1.6, "mcap", SIZE, seed=5)))
    single = anonymize_bag(root / "in", root / "single", results_topic=RESULTS, progress=False,
                           labels=labels)
    batch = _run([BagJob(root / "in", root / "ray")], chunk_seconds=0.5, workers=2,
                 labels=labels)
    return root, single, batch


def test_ray_output_equals_single_process_output(sample):
    root, single, batch = sample
    assert batch.failed == {} and len(batch.bags) == 1
    summary = batch.bags[0]
    assert summary.chunks == 4 and summary.workers == 2
    ray_msgs, single_msgs = _messages(root / "ray"), _messages(root / "single")
    assert len(ray_msgs) == 16 * 2 + 16 + 1
    assert ray_msgs == single_msgs  # images too: byte for byte, in the same order
    assert _results(root / "ray") == _results(root / "single")
    assert connections(root / "ray") == connections(root / "single")


def test_non_image_messages_are_byte_identical_to_the_input(sample):
    root, _, _ = sample
    before = [m for m in _messages(root / "in") if not m[0].endswith(("image_raw", "compressed"))]
    after = [m for m in _messages(root / "ray") if not m[0].endswith(("image_raw", "compressed"))]
    assert before == after and {t for t, _, _ in after} == {"/tf", "/tf_static"}
    with io.open_bag(root / "in") as a, io.open_bag(root / "ray") as b:
        assert b.custom_data["vlm_node.sample"] == a.custom_data["vlm_node.sample"]
        used = json.loads(b.custom_data["vlm_node.anonymize_bag"])
    assert used["ray"] == {"chunks": 4, "chunk_seconds": 0.5, "warmup_frames": 8}
    assert used["input"] == "in"  # the settings the tasks ran with: stages one after another
    assert (used["anonymizer"]["threads"], used["anonymizer"]["parallel_stages"]) == (1, False)


def test_summary_counts_equal_the_single_process_ones(sample):
    _, single, batch = sample
    summary = batch.bags[0]
    assert {t: c.to_json() for t, c in summary.images.items()} == \
        {t: c.to_json() for t, c in single.images.items()}
    assert (summary.copied, summary.excluded, summary.results_written) == \
        (single.copied, single.excluded, single.results_written)
    assert summary.faces > 0 and summary.plates > 0
    # the labelled frames are scored in the chunk tasks and added up: the same figures
    assert summary.validation.to_json() == single.validation.to_json()
    assert summary.validation.frames == summary.validation.labelled == 32
    assert summary.validation.not_found == 0 and summary.validation.kinds["face"].leaked == 0
    # 3 cuts (0.5, 1.0, 1.5 s), 2 image topics, up to 8 warm-up frames each: the first cut
    # has only 5 frames of each topic before it
    assert summary.warmup_frames == 2 * (5 + 8 + 8)
    data = batch.to_json()
    assert data["runner"] == "ray" and data["chunks"] == 4 and data["workers"] == 2
    assert data["cluster_cpus"] == 2 and data["nodes"] == 1 and data["frames"] == 32
    assert data["bags"][0]["chunked"]["chunks"] == 4
    assert "chunks: 4 on up to 2 workers" in batch.report()
    assert "ray: 2 workers on 1 node(s) with 2 CPUs, 4 chunks" in batch.report()


def _miss_bag(path):
    """Six frames at 10 Hz of a portrait; in frame 3 the face is noise (the detector misses it,
    carry-over keeps its region redacted)."""
    image, face = portrait(SIZE)
    x, y, w, h = (int(round(v)) for v in face)
    noisy = image.copy()
    noisy[y:y + h, x:x + w] = np.random.default_rng(0).integers(0, 256, (h, w, 3), np.uint8)

    def build(writer):
        conn = writer.add_topic("/cam/image_raw", io.IMAGE, [io.SENSOR_DATA_QOS])
        for i in range(6):
            t = 1_000_000_000 + i * PERIOD_NS
            writer.write_msg(conn, t, io.bgr_to_image(noisy if i == 3 else image,
                                                      io.header(t, "cam")))
    write_bag(path, build)
    return face


def test_warmup_carries_a_region_across_a_cut(tmp_path):
    """A cut right before the missed frame: without warm-up that frame's face region is left
    as it came (and it is the only difference to a whole run); with it, the output is the
    whole run's."""
    face = _miss_bag(tmp_path / "in")
    # the frame must be a real miss for this test: the default face threshold (0.12) still
    # finds the head outline around the noise (score 0.14) and the head backstop redacts the
    # person's head anyway (what they are for); at 0.2 without the backstop only carry-over
    # can cover it
    config = AnonymizerConfig(head_backstop=False, centerface_score_threshold=0.2)
    anonymize_bag(tmp_path / "in", tmp_path / "single", config, results_topic=RESULTS,
                  progress=False)
    cold = _run([BagJob(tmp_path / "in", tmp_path / "cold")], config=config, chunk_seconds=0.3,
                warmup_frames=0)
    warm = _run([BagJob(tmp_path / "in", tmp_path / "warm")], config=config, chunk_seconds=0.3)
    assert cold.bags[0].chunks == warm.bags[0].chunks == 2
    assert cold.bags[0].warmup_frames == 0 and warm.bags[0].warmup_frames == 3

    before, single = images(tmp_path / "in"), images(tmp_path / "single")
    missed = ("/cam/image_raw", 1_000_000_000 + 3 * PERIOD_NS)
    assert box_change(before[missed], single[missed], face) > 20  # carried and blurred
    assert box_change(before[missed], images(tmp_path / "cold")[missed], face) == 0.0
    assert _messages(tmp_path / "warm") == _messages(tmp_path / "single")
    cold_msgs, single_msgs = _messages(tmp_path / "cold"), _messages(tmp_path / "single")
    assert len(cold_msgs) == len(single_msgs) == 6
    assert [(a[0], a[1]) for a, b in zip(cold_msgs, single_msgs) if a != b] == [missed]


def test_synthetic_plates_differ_only_inside_redacted_regions(tmp_path):
    """`synthetic` seeds each rendered plate with its track id, and a chunk numbers its tracks
    from its warm-up: from the first chunk whose warm-up starts after the bag's first frame
    (frames 10.. here: chunks of 10 frames, the second warmed up on frames 7-9), a fake plate
    may show other characters than in a whole run. Whether it does depends on how many tracks
    the whole run opened before (with onnxruntime the counts happened to agree up to frame 19,
    with OpenVINO's bf16 scores not). Exactly that differs: pixels that both runs replaced,
    nothing else, and the first chunk not at all."""
    write_sample_bag(tmp_path / "in", 24, 1, 2.4, "mcap", SIZE, seed=5)
    config = AnonymizerConfig(redaction="synthetic")
    anonymize_bag(tmp_path / "in", tmp_path / "single", config, progress=False)
    _run([BagJob(tmp_path / "in", tmp_path / "ray")], config=config, chunk_seconds=1.0)
    before, single, chunked = (images(tmp_path / n) for n in ("in", "single", "ray"))
    assert set(chunked) == set(single) == set(before)
    differing = []
    for key in sorted(before):
        changed = np.abs(single[key] - chunked[key]).max(axis=2) > 0
        redacted_in_both = (np.abs(single[key] - before[key]).max(axis=2) > 0) & \
            (np.abs(chunked[key] - before[key]).max(axis=2) > 0)
        assert not (changed & ~redacted_in_both).any(), key
        if changed.any():
            differing.append((key[1] - min(k[1] for k in before)) // PERIOD_NS)
    assert all(i >= 10 for i in differing), differing


def _corrupt_last_mcap_chunk(bag_dir):
    """Break the CRC of the bag's last MCAP chunk; returns its first log time."""
    data_file = next(bag_dir.glob("*.mcap"))
    with data_file.open("rb") as f:
        chunks = make_reader(f).get_summary().chunk_indexes
    assert len(chunks) >= 3
    last = max(chunks, key=lambda c: c.chunk_start_offset)
    data = bytearray(data_file.read_bytes())
    data[last.chunk_start_offset + 33:last.chunk_start_offset + 37] = b"\x01\x02\x03\x04"
    data_file.write_bytes(bytes(data))
    return last.message_start_time


def _no_hidden_entries(directory):
    return not list(directory.rglob(".*"))


def test_several_bags_and_a_failed_chunk(tmp_path):
    """A directory of bags: a nested sqlite3 bag and a bare .mcap are written under their
    relative names; a bag whose last chunk is damaged fails alone, with nothing left of it."""
    recordings = tmp_path / "recordings"
    (recordings / "sub").mkdir(parents=True)
    write_sample_bag(recordings / "a", 6, 1, 0.6, "mcap", SIZE, seed=1)
    write_sample_bag(recordings / "sub" / "b", 5, 2, 0.5, "sqlite3", SIZE, seed=2)
    shutil.copy(recordings / "a" / "a.mcap", recordings / "c.mcap")
    write_sample_bag(recordings / "damaged", 14, 1, 1.4, "mcap", SIZE, seed=3)
    _corrupt_last_mcap_chunk(recordings / "damaged")

    from vlm_node.bags.batch import plan_jobs
    jobs, is_batch = plan_jobs([recordings], tmp_path / "out")
    assert is_batch and [j.dst.relative_to(tmp_path / "out").as_posix() for j in jobs] == \
        ["a", "c", "damaged", "sub/b"]
    batch = _run(jobs, tmp_path / "out", chunk_seconds=0.3, workers=2)

    assert sorted(s.input for s in batch.bags) == [str(recordings / n) for n in
                                                   ("a", "c.mcap", "sub/b")]
    assert list(batch.failed) == [str(recordings / "damaged")]
    error = batch.failed[str(recordings / "damaged")]
    assert error.startswith("chunk ") and "failed: BagError" in error
    assert "damaged bag" in error and "checksum" in error.lower()
    assert not (tmp_path / "out" / "damaged").exists()
    assert _no_hidden_entries(tmp_path / "out")  # no staging directory, no chunk bag left
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a", "c", "sub"]
    for name, src in (("a", "a"), ("c", "a"), ("sub/b", "sub/b")):
        out = tmp_path / "out" / name
        want = [m for m in _messages(recordings / src) if m[0] in ("/tf", "/tf_static")]
        assert [m for m in _messages(out) if m[0] in ("/tf", "/tf_static")] == want
        assert set(images(out)) == set(images(recordings / src))
    with io.open_bag(tmp_path / "out" / "sub" / "b") as bag:
        assert bag.storage == "sqlite3"
    assert batch.frames == 6 + 10 + 6 and batch.dropped == 0
    assert "FAILED" in batch.report() and "3 bags written, 1 failed" in batch.report()


def test_options_and_cluster_checks(tmp_path):
    with pytest.raises(ConfigError, match="--workers"):
        RayOptions(workers=0)
    with pytest.raises(ConfigError, match="--chunk-seconds"):
        RayOptions(chunk_seconds=0)
    with pytest.raises(ConfigError, match="--warmup-frames"):
        RayOptions(warmup_frames=-1)
    config, cpus = worker_config(AnonymizerConfig(threads=0, parallel_stages=True))
    assert (config.threads, config.parallel_stages, cpus) == (1, False, 1)
    config, cpus = worker_config(AnonymizerConfig(threads=3))
    assert (config.threads, config.parallel_stages, cpus) == (3, False, 3)
    cluster = connect("auto")  # already connected: reused, not restarted
    assert (cluster.cpus, cluster.nodes, cluster.started_here) == (2, 1, False)
    _miss_bag(tmp_path / "in")
    with pytest.raises(ClusterError, match="needs 3"):
        _run([BagJob(tmp_path / "in", tmp_path / "out")], config=AnonymizerConfig(threads=3))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in"]


@pytest.fixture
def cli(monkeypatch):
    monkeypatch.setattr(cli_main, "SUBCOMMANDS", ("anonymize_bag",))
    return cli_main.main


def test_cli_ray_exit_codes(cli, tmp_path, capsys):
    """0: several bags written; 2: a damaged bag (its chunk named, no OUT)."""
    write_sample_bag(tmp_path / "one", 4, 1, 0.4, "mcap", SIZE, seed=1)
    _miss_bag(tmp_path / "two")
    summary = tmp_path / "summary.json"
    assert cli(["anonymize-bag", str(tmp_path / "one"), str(tmp_path / "two"),
                str(tmp_path / "out"), "--ray", "auto", "--workers", "2", "--chunk-seconds",
                "0.25", "--summary", str(summary), "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "total: 2 bags written, 0 failed; 10 frames" in text
    data = json.loads(summary.read_text())
    assert [b["output"] for b in data["bags"]] == [str(tmp_path / "out" / n)
                                                   for n in ("one", "two")]
    assert data["chunks"] == 2 + 3 and data["runner"] == "ray"

    write_sample_bag(tmp_path / "bad", 14, 1, 1.4, "mcap", SIZE, seed=3)
    _corrupt_last_mcap_chunk(tmp_path / "bad")
    assert cli(["anonymize-bag", str(tmp_path / "bad"), str(tmp_path / "bad_anon"), "--ray",
                "auto", "--chunk-seconds", "0.5", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert f"error: {tmp_path / 'bad'}: chunk " in err and "checksum" in err.lower()
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == ["bad", "one", "out", "summary.json", "two"]
