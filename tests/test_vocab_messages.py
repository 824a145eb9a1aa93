"""The vocabularies the core validates against are the constants of the built messages."""
from vlm_node import vocab
from vlm_node.interfaces import msg_constants
from vlm_node_interfaces.msg import SceneDescription, TrafficSign


def test_vocab_matches_generated_message_constants():
    for msg_cls, name in ((TrafficSign, "TrafficSign"), (SceneDescription, "SceneDescription")):
        consts = msg_constants(name)
        assert consts, name
        for key, value in consts.items():
            assert getattr(msg_cls, key) == value, key


def test_vocabularies_are_complete_and_unique():
    assert "speed_limit" in vocab.SIGN_CLASSES and vocab.SIGN_CLASSES[0] == "unknown"
    for group in (vocab.SIGN_CLASSES, vocab.UNITS, vocab.WEATHER, vocab.LIGHTING,
                  vocab.ROAD_TYPES, vocab.HAZARDS, vocab.SOURCES, vocab.TRACK_STATES):
        assert len(group) == len(set(group))
    assert set(vocab.SOURCES) == {"vlm", "ocr", "fused", "clip", "classifier", "shape"}
    assert vocab.UNITS == ("", "km/h", "mph", "t", "m")
    for cls, (units, lo, hi) in vocab.VALUE_RULES.items():
        assert set(units) <= set(vocab.UNITS) and lo < hi
