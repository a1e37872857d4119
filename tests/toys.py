"""Hand-made stand-ins shared by tests: a toy task whose answers are plain words."""

from reasonscale.tasks.base import Task
from reasonscale.types import Problem


class LastWordTask(Task):
    """Problems 'q0'..'qN' whose answer is 7 (levels alternate 1, 2); a solution's answer is its last word."""

    name = "toy"
    step_delimiter = "\n"

    def __init__(self, count: int = 1):
        self.count = count

    def load(self):
        return [Problem(id=f"q{i}", question=f"q{i}", answer="7", level=1 + i % 2) for i in range(self.count)]

    def format_prompt(self, problem):
        return problem.question + "\n"

    def extract_answer(self, solution):
        words = solution.split()
        return words[-1] if words else None

    def equivalent(self, pairs):
        return [a.strip() == b.strip() for a, b in pairs]
