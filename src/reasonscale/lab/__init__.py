"""The lab domain: generated computation-graph problems, an exact step oracle, and tiny models trained on CPU.

Modules: `graph` (a problem and its text forms), `generator` (levels and seeded generation), `splits` (disjoint
train / val / test sets, JSONL export), `oracle` (exact step checks), `model` (presets), `train` (the training
loop and `train_preset`, imported on their own since they need torch), `tokenizer` (the character tokenizer).
"""

from reasonscale.lab.generator import LEVELS, LevelSpec, generate
from reasonscale.lab.graph import Graph, Node
from reasonscale.lab.oracle import ErrorKind, OracleResult, check_solution
from reasonscale.lab.splits import TrainStream, export_jsonl, load_problems, split_graphs

__all__ = [
    "LEVELS",
    "ErrorKind",
    "Graph",
    "LevelSpec",
    "Node",
    "OracleResult",
    "TrainStream",
    "check_solution",
    "export_jsonl",
    "generate",
    "load_problems",
    "split_graphs",
]
