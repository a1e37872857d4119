"""The lab domain: generated computation-graph problems, an exact step oracle, and tiny models trained on CPU.

Training lives in `reasonscale.lab.train` (`train_preset`), imported on its own since it needs torch.
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
