"""The Task interface: load problems, format prompts, split solutions into steps, extract and grade answers."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

from reasonscale.types import Problem


class Task(ABC):
    """A data set plus everything needed to prompt for it and to grade answers to it.

    Subclasses set `name` and implement `load`, `format_prompt`, `extract_answer` and `equivalent`.
    """

    name: str = "task"
    step_delimiter: str = "\n\n"
    # Stop strings that end a whole solution (the end-of-sequence token always does).
    solution_stop: tuple[str, ...] = ()

    @abstractmethod
    def load(self) -> list[Problem]:
        """The problems of the configured split, in a stable order, after any limit."""

    @abstractmethod
    def format_prompt(self, problem: Problem) -> str:
        """The prompt the model continues with its solution (few-shot examples included)."""

    @abstractmethod
    def extract_answer(self, solution: str) -> str | None:
        """The final answer in a model's solution, or None when it has none."""

    @abstractmethod
    def equivalent(self, pairs: Sequence[tuple[str, str]]) -> list[bool]:
        """For each (reference, prediction) pair, whether they are the same answer. Never hangs or raises."""

    def normalize(self, answer: str) -> str:
        """A cheap canonical form: answers with the same form are equivalent without asking `equivalent`."""
        return answer.strip()

    def split_steps(self, solution: str) -> list[str]:
        """The solution's reasoning steps, in order, without empty ones."""
        return [s.strip() for s in solution.split(self.step_delimiter) if s.strip()]

    def join_steps(self, steps: Sequence[str]) -> str:
        return self.step_delimiter.join(steps)

    def grade(self, problems: Sequence[Problem], answers: Sequence[str | None]) -> list[bool]:
        """Whether each answer is correct for its problem; a missing answer is wrong."""
        asked = [(p.answer, a) for p, a in zip(problems, answers) if a is not None]
        verdicts = iter(self.equivalent(asked))
        return [a is not None and next(verdicts) for a in answers]

    def group_answers(self, answers: Sequence[str | None]) -> list[int | None]:
        """Cluster answers by equivalence: a group index per answer (None for a missing answer).

        Equal normal forms share a group at once; distinct forms are compared in one batch, in both directions
        (graders may be asymmetric), and merged when either direction says equal.
        """
        forms = list(dict.fromkeys(self.normalize(a) for a in answers if a is not None))
        first = {self.normalize(a): a for a in reversed([a for a in answers if a is not None])}
        pairs = [(i, j) for i in range(len(forms)) for j in range(i + 1, len(forms))]
        asked = [(first[forms[i]], first[forms[j]]) for i, j in pairs] + [(first[forms[j]], first[forms[i]]) for i, j in pairs]
        verdicts = self.equivalent(asked) if asked else []
        parent = list(range(len(forms)))

        def root(i: int) -> int:
            while parent[i] != i:
                i = parent[i]
            return i

        for n, (i, j) in enumerate(pairs):
            if verdicts[n] or verdicts[len(pairs) + n]:
                parent[max(root(i), root(j))] = min(root(i), root(j))
        index = {form: root(k) for k, form in enumerate(forms)}
        return [None if a is None else index[self.normalize(a)] for a in answers]
