"""Expert creation: synthetic knowledge, general check set, scoring, LoRA training, the shared reader."""

from ..evaluation.scoring import AnswerScorer, get_scorer, register_scorer
from .evaluation import QAEvaluation, evaluate_qa, paired_comparison
from .general import general_knowledge_questions
from .reader import reader_for, synthetic_reading_examples, train_reader
from .synthetic import QA, SYNTHETIC_KINDS, SyntheticDomain, make_synthetic_domain
from .training import train_lora

__all__ = [
    "QA",
    "SYNTHETIC_KINDS",
    "AnswerScorer",
    "QAEvaluation",
    "SyntheticDomain",
    "evaluate_qa",
    "general_knowledge_questions",
    "get_scorer",
    "make_synthetic_domain",
    "paired_comparison",
    "reader_for",
    "register_scorer",
    "synthetic_reading_examples",
    "train_lora",
    "train_reader",
]
