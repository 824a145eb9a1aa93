"""Several bags in one call: which bags the IN arguments name, where their outputs go, and the
one-process runner (a failed bag is reported and leaves nothing, the others are written)."""
import shutil

import pytest

from bag_helpers import read_all
from vlm_node.anonymize import AnonymizerConfig
from vlm_node.bags.batch import (AnonymizeOptions, BagJob, anonymize_bags, check_outputs,
                                 find_bags, plan_jobs)
from vlm_node.tools.sample_bag import write_sample_bag
from vlm_node.errors import BagError, ConfigError

SIZE = (160, 120)


def _bag(path, storage="mcap", frames=2):
    path.parent.mkdir(parents=True, exist_ok=True)
    write_sample_bag(path, frames, 1, 0.1 * frames, storage, SIZE, seed=1)
    return path


@pytest.fixture(scope="module")
def recordings(tmp_path_factory):
    """recordings/{a, sub/b (sqlite3), sub/deeper/c, d.mcap (bare), .hidden, notes.txt}."""
    root = tmp_path_factory.mktemp("batch") / "recordings"
    _bag(root / "a")
    _bag(root / "sub" / "b", "sqlite3")
    _bag(root / "sub" / "deeper" / "c")
    shutil.copy(root / "a" / "a.mcap", root / "d.mcap")
    _bag(root / ".hidden")
    (root / "notes.txt").write_text("not a bag")
    return root


def _names(jobs, out):
    return [(j.src.name, j.dst.relative_to(out).as_posix()) for j in jobs]


def test_one_bag_is_the_classic_form(recordings, tmp_path):
    jobs, batch = plan_jobs([recordings / "a"], tmp_path / "anon")
    assert (jobs, batch) == ([BagJob(recordings / "a", tmp_path / "anon")], False)
    jobs, batch = plan_jobs([recordings / "d.mcap"], tmp_path / "anon")
    assert (jobs, batch) == ([BagJob(recordings / "d.mcap", tmp_path / "anon")], False)
    missing = tmp_path / "missing"  # reported by anonymize_bag, as it always was
    assert plan_jobs([missing], tmp_path / "o") == ([BagJob(missing, tmp_path / "o")], False)


def test_a_directory_of_bags_keeps_relative_names(recordings, tmp_path):
    assert [p.name for p in find_bags(recordings)] == ["a", "d.mcap", "b", "c"]
    out = tmp_path / "anon"
    jobs, batch = plan_jobs([recordings], out)
    assert batch
    assert _names(jobs, out) == [("a", "a"), ("d.mcap", "d"), ("b", "sub/b"),
                                 ("c", "sub/deeper/c")]


def test_several_inputs_keep_their_names(recordings, tmp_path):
    out = tmp_path / "anon"
    jobs, batch = plan_jobs([recordings / "a", recordings / "d.mcap", recordings / "sub"], out)
    assert batch
    assert _names(jobs, out) == [("a", "a"), ("d.mcap", "d"), ("b", "sub/b"),
                                 ("c", "sub/deeper/c")]


def test_planning_errors(recordings, tmp_path):
    with pytest.raises(ConfigError, match="both be written to"):
        plan_jobs([recordings / "a", recordings / "sub" / "deeper" / "c",
                   recordings / "a"], tmp_path / "o")
    with pytest.raises(ConfigError, match="inside the input"):
        plan_jobs([recordings], recordings / "anon")
    with pytest.raises(ConfigError, match="must be a directory"):
        plan_jobs([recordings / "a", recordings / "d.mcap"], recordings / "sub" / "b")
    with pytest.raises(BagError, match="bag not found"):
        plan_jobs([recordings / "a", tmp_path / "nope"], tmp_path / "o")
    (tmp_path / "empty").mkdir()
    with pytest.raises(BagError, match="no bags found"):
        plan_jobs([tmp_path / "empty"], tmp_path / "o")
    (tmp_path / "o").mkdir()
    jobs = [BagJob(recordings / "a", tmp_path / "o")]
    with pytest.raises(BagError, match="--force"):
        check_outputs(jobs, force=False)
    check_outputs(jobs, force=True)


def test_bags_one_after_another_and_a_failed_one(recordings, tmp_path):
    ins = tmp_path / "in"
    shutil.copytree(recordings / "a", ins / "good")
    shutil.copytree(recordings / "a", ins / "cut")
    data = ins / "cut" / "a.mcap"
    data.write_bytes(data.read_bytes()[:-200])  # no end magic: a recording that did not finish
    out = tmp_path / "out"
    jobs, _ = plan_jobs([ins], out)
    options = AnonymizeOptions(AnonymizerConfig())
    batch = anonymize_bags(jobs, out, options, progress=False)
    assert [s.output for s in batch.bags] == [str(out / "good")]
    assert list(batch.failed) == [str(ins / "cut")]
    assert "magic" in batch.failed[str(ins / "cut")]
    assert sorted(p.name for p in out.iterdir()) == ["good"]
    assert len(read_all(out / "good")) == len(read_all(ins / "good"))
    assert batch.frames == 2 and batch.runner == "single-process"
    assert "1 bags written, 1 failed" in batch.report()

    # every bag failing: the OUT directory this call created is removed again
    only_bad = [BagJob(ins / "cut", tmp_path / "out2" / "cut")]
    batch = anonymize_bags(only_bad, tmp_path / "out2", options, progress=False)
    assert not batch.bags and not (tmp_path / "out2").exists()
