"""Anonymization of camera frames (faces, licence plates), fail closed."""
from vlm_node.anonymize.anonymizer import Anonymizer, AnonymizerStats, DetectorFailure
from vlm_node.anonymize.config import AnonymizerConfig

__all__ = ["Anonymizer", "AnonymizerConfig", "AnonymizerStats", "DetectorFailure"]
