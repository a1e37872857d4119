"""Which PRM training options make the lab PRM select better (issue #17): labels, hard negatives, more problems.

Trains PRM variants on the labelled solutions of a finished `reasonscale lab search` run (its `prm_data.jsonl`:
Monte-Carlo labels of the policy's solutions to training problems) and scores the first `--pool` samples of each
test problem in its `eval/results.jsonl`, whose oracle step scores are the truth. Variants:

  mc            the run's Monte-Carlo labels (what the experiment trains today)
  oracle        the same solutions labelled by the exact oracle (1 up to the first wrong step, 0 from it on)
  mc+hnK        mc with K near-miss copies per step labelled 1 (`data.prm_labels.hard_negatives`)
  oracle+hnK    oracle with them
  oracle-moreN  oracle labels on N training problems per level, sampled from the policy (the run's store is
                copied so its cached samples are reused)
  ...+group     any of these with each batch holding whole problems (`prm.batching: problem`), so the ranking
                term compares a problem's solutions with each other (default: examples batched at random)
  ...+srankW    any of these with weight W on the ranking loss between a problem's solutions' last-step scores
                (`prm.solution_rank_weight`; e.g. oracle+group+srank1)
  ...@eE        any of these trained for E epochs instead of 4 (e.g. oracle@e16)

Printed per variant: pooled step ROC AUC on first-error labels, within-problem AUC of final scores (mean over
problems with both right and wrong samples), near-miss accuracy (how often a right step outscores itself with its
last number made wrong), best-of-N and PRM-weighted best-of-N accuracy against majority@N
(with standard errors, and the paired difference to majority). Read-only on the run; all output in `--work`.

    PYTHONPATH=src python benchmarks/prm_variants.py --run runs/lab-search-default --variants mc oracle mc+hn4
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import statistics
from collections import defaultdict
from pathlib import Path

import torch

from reasonscale.config import TaskConfig
from reasonscale.data.prm_labels import PRMExample, hard_negatives, load_examples, relabel
from reasonscale.pipelines.search_experiment import PRMStageConfig, SearchExperimentConfig, prm_examples
from reasonscale.verifiers.metrics import roc_auc
from reasonscale.tasks import build_task
from reasonscale.train.prm import PRMTrainConfig, train_prm
from reasonscale.verifiers import build_verifier

# the training settings of examples/lab_search.yaml (the run's PRM)
TRAIN = PRMTrainConfig(mode="token", target="soft", epochs=4, batch_size=32, lr=1e-3, rank_weight=0.5)


def parse(name: str) -> tuple[str, dict[str, str]]:
    """Variant `name` as its label source and options: `hn`, `srank` (with their numbers), `group` and `e`."""
    head, _, epochs = name.partition("@e")
    base, *options = head.split("+")
    found = {"e": epochs} if epochs else {}
    for option in options:
        key = next((k for k in ("hn", "srank", "group") if option.startswith(k)), None)
        if key is None or (key == "group") != (option == "group"):
            raise ValueError(f"unknown option '+{option}' in variant '{name}'")
        found[key] = option.removeprefix(key)
    return base, found


def settings(name: str) -> PRMTrainConfig:
    """The training settings of variant `name`: the run's, with its epochs, batching and solution ranking weight."""
    _, options = parse(name)
    update: dict = {"batching": "problem"} if "group" in options else {}
    if "e" in options:
        update["epochs"] = float(options["e"])
    if "srank" in options:
        update["solution_rank_weight"] = float(options["srank"])
    return TRAIN.model_copy(update=update)


def training_set(name: str, run: Path, work: Path, policy: str) -> list[PRMExample]:
    """The examples variant `name` trains on (hard negatives included)."""
    base, options = parse(name)
    negatives = options.get("hn")
    if base == "mc":
        examples = load_examples(run / "prm_data.jsonl")
    elif base == "oracle":
        oracle = build_verifier("oracle", build_task(TaskConfig(name="lab")))
        examples = relabel(load_examples(run / "prm_data.jsonl"), oracle)
    elif base.startswith("oracle-more"):
        examples = sampled(int(base.removeprefix("oracle-more")), run, work, policy)
    else:
        raise ValueError(f"unknown variant '{name}'")
    return examples + hard_negatives(examples, int(negatives or 0), TRAIN.seed)


def sampled(per_level: int, run: Path, work: Path, policy: str) -> list[PRMExample]:
    """Oracle-labelled policy solutions on `per_level` training problems per level, through the experiment's own
    data stage (the run's store copied, so the samples it holds are reused)."""
    out = work / f"more-{per_level}"
    if not (out / "store.sqlite").exists():
        out.mkdir(parents=True, exist_ok=True)
        shutil.copy(run / "store.sqlite", out / "store.sqlite")
    cfg = SearchExperimentConfig(
        policy=policy, device="cpu", prm=PRMStageConfig(labels="oracle", train_per_level=per_level, samples=4),
        output_dir=str(out),
    )
    cfg.sampling.temperature, cfg.sampling.max_tokens, cfg.sampling.seed = 0.8, 160, 0
    return prm_examples(cfg, policy, out, progress=False)


def pool(run: Path, size: int):
    """Test problems (the run's task), the first `size` candidates of each, their step lists and oracle scores."""
    task = build_task(TaskConfig.model_validate(json.loads((run / "summary.json").read_text())["config"]["task"]))
    problems = {p.id: p for p in task.load()}
    records = [json.loads(line) for line in (run / "eval" / "results.jsonl").read_text().splitlines()]
    return task, [(problems[r["id"]], r["candidates"][:size]) for r in records]


def score_all(verifier, flat: list[tuple]) -> list[list[float]]:
    """Step scores of (problem, steps) pairs, in chunks."""
    scores: list[list[float]] = []
    for i in range(0, len(flat), 256):
        chunk = flat[i : i + 256]
        scores += verifier.score([p for p, _ in chunk], [s for _, s in chunk])
    return scores


def score_pool(task, items, verifier) -> list[list[list[float]]]:
    """The PRM's step scores of every candidate, problem by problem."""
    scores = score_all(verifier, [(p, task.split_steps(c["text"])) for p, cands in items for c in cands])
    out, at = [], 0
    for _, cands in items:
        out.append(scores[at : at + len(cands)])
        at += len(cands)
    return out


def near_miss_accuracy(task, items, scores: list[list[list[float]]], verifier) -> float:
    """How often the PRM scores a right step (in a solution right so far) above the same step with its last number
    made wrong (`hard_negatives`, one per step): whether it checks arithmetic."""
    originals, flat = [], []
    for (problem, cands), per in zip(items, scores):
        for c, s in zip(cands, per):
            steps = task.split_steps(c["text"])
            labels = [float(v) for v in c["step_scores"]["oracle"]]
            example = PRMExample(problem.id, problem.question, "", steps, labels, labels, bool(c["correct"]))
            for negative in hard_negatives([example], 1, seed=1):
                originals.append(s[len(negative.steps) - 1])
                flat.append((problem, negative.steps))
    wrong = [s[-1] for s in score_all(verifier, flat)]
    return statistics.fmean(float(a > b) for a, b in zip(originals, wrong))


@torch.no_grad()
def policy_near_miss_accuracy(task, items, policy: str, per_problem: int = 4) -> float:
    """The same near-miss test for the policy itself: how often log P(step | solution so far) is higher for the right
    step than for its near miss (whether a generative check could work where the trained head does not)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer, model = AutoTokenizer.from_pretrained(policy), AutoModelForCausalLM.from_pretrained(policy).eval()

    def logp(context: str, step: str) -> float:
        start, ids = len(tokenizer(context)["input_ids"]), tokenizer(context + step)["input_ids"]
        logits = model(torch.tensor([ids])).logits[0, :-1].log_softmax(-1)
        return sum(logits[t - 1, ids[t]].item() for t in range(start, len(ids)))

    wins = []
    for problem, cands in items:
        for c in cands[:per_problem]:
            steps = task.split_steps(c["text"])
            labels = [float(v) for v in c["step_scores"]["oracle"]]
            example = PRMExample(problem.id, problem.question, "", steps, labels, labels, bool(c["correct"]))
            for negative in hard_negatives([example], 1, seed=1):
                i = len(negative.steps) - 1
                context = task.format_prompt(problem) + "".join(step + "\n" for step in steps[:i])
                wins.append(float(logp(context, steps[i] + "\n") > logp(context, negative.steps[i] + "\n")))
    return statistics.fmean(wins)


def pick_best(finals: list[float], answers: list[str | None]) -> int | None:
    ranked = [(s, -i) for i, (s, a) in enumerate(zip(finals, answers)) if a is not None]
    return -max(ranked)[1] if ranked else None


def pick_weighted(finals: list[float], answers: list[str | None]) -> int | None:
    totals: dict[str, float] = defaultdict(float)
    first: dict[str, int] = {}
    for i, (s, a) in enumerate(zip(finals, answers)):
        if a is not None:
            totals[a] += s
            first.setdefault(a, i)
    return first[max(totals, key=lambda a: (totals[a], -first[a]))] if totals else None


def metrics(items, scores: list[list[list[float]]]) -> dict[str, float | None]:
    """Step AUC (first-error), within-problem AUC of final scores, and selection accuracies with majority's."""
    step_s, step_y, within = [], [], []
    right: dict[str, list[float]] = defaultdict(list)
    for (_, cands), per in zip(items, scores):
        for c, s in zip(cands, per):
            truth = c["step_scores"]["oracle"]
            keep = truth.index(0.0) + 1 if 0.0 in truth else len(truth)
            step_s += s[:keep]
            step_y += [int(v) for v in truth[:keep]]
        finals = [s[-1] if s else 0.0 for s in per]
        correct = [bool(c["correct"]) for c in cands]
        if (auc := roc_auc(finals, correct)) is not None:
            within.append(auc)
        answers = [c["answer"] for c in cands]
        for name, index in (("best", pick_best(finals, answers)), ("weighted", pick_weighted(finals, answers)),
                            ("majority", pick_weighted([1.0] * len(cands), answers))):
            right[name].append(float(index is not None and correct[index]))
    out: dict[str, float | None] = {"step_auc": roc_auc(step_s, step_y),
                                    "within_auc": statistics.fmean(within) if within else None,
                                    "within_auc_se": statistics.stdev(within) / math.sqrt(len(within))
                                    if len(within) > 1 else None}
    for name, hits in right.items():
        out[name] = statistics.fmean(hits)
        out[name + "_se"] = math.sqrt(out[name] * (1 - out[name]) / len(hits))
    diff = [w - m for w, m in zip(right["weighted"], right["majority"])]
    out["weighted_minus_majority"] = statistics.fmean(diff)
    out["paired_se"] = statistics.stdev(diff) / math.sqrt(len(diff))
    return out


def stored_scores(items, run: Path) -> list[list[list[float]]]:
    """The run's own PRM's step scores, as its evaluation stored them."""
    records = [json.loads(line) for line in (run / "eval" / "results.jsonl").read_text().splitlines()]
    key = next(k for k in records[0]["candidates"][0]["step_scores"] if k.startswith("prm"))
    return [[c["step_scores"][key] for c in cands] for _, cands in items]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True, help="a finished lab search run (read only)")
    parser.add_argument("--work", type=Path, default=Path("tmp/prm-variants"))
    parser.add_argument("--policy", default="default", help="lab preset of the run (the PRM's base)")
    parser.add_argument("--variants", nargs="*", default=["mc", "oracle", "mc+hn4", "oracle+hn4"])
    parser.add_argument("--pool", type=int, default=16, help="first samples of each test problem to select from")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--policy-check", action="store_true", help="also the policy's own near-miss accuracy")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from reasonscale.lab.train import train_preset

    policy = str(train_preset(args.policy, progress=False))
    task, items = pool(args.run, args.pool)
    rows = {"run's PRM (stored scores)": metrics(items, stored_scores(items, args.run))}
    if args.policy_check:  # assumes a character-level tokenizer, as the lab's (a context's tokens prefix its step's)
        print(f"policy log-likelihood near-miss accuracy: {policy_near_miss_accuracy(task, items, policy):.3f}")
    for name in args.variants:
        examples = training_set(name, args.run, args.work, policy)
        result = train_prm(examples, policy, args.work / name, settings(name), device="cpu")
        verifier = build_verifier("prm", task, str(result.path))
        scores = score_pool(task, items, verifier)
        rows[name] = metrics(items, scores) | {"near_miss": near_miss_accuracy(task, items, scores, verifier)}
        rows[name] |= {"examples": len(examples), "train_s": result.seconds}
        print(json.dumps({"variant": name, **rows[name]}), flush=True)
    n = args.pool
    print(f"\n| variant | train examples | step AUC | within-problem AUC (± SE) | near-miss acc. | best-of-{n} | "
          f"weighted best-of-{n} | majority@{n} | weighted - majority |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, m in rows.items():
        near = f"{m['near_miss']:.3f}" if "near_miss" in m else ""
        print(f"| {name} | {m.get('examples', '')} | {m['step_auc']:.3f} | "
              f"{m['within_auc']:.3f} ± {m['within_auc_se']:.3f} | {near} | "
              f"{m['best']:.3f} ± {m['best_se']:.3f} | {m['weighted']:.3f} ± {m['weighted_se']:.3f} | "
              f"{m['majority']:.3f} ± {m['majority_se']:.3f} | "
              f"{m['weighted_minus_majority']:+.3f} ± {m['paired_se']:.3f} |")


if __name__ == "__main__":
    main()
