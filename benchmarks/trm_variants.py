"""Which training choices let the lab's TRM answer head order a question's responses (issue #15).

Trains answer-scoring TRMs on the TAG annotations of a finished `reasonscale lab solar` run and measures each on
the run's test questions (`tag-test/`): selection accuracy (is the top-scored response right) and within-question
AUC (0.5 is chance), both with their standard errors, per training seed and their mean. Variants:

  answer        answer head only (`topology_weight: 0`), every weight trained: the run's `trm-answer`
  m-trm         both heads: the run's `m-trm`
  ...+lora      LoRA (r 16, alpha 32, lr 1e-3) instead of training every weight (lr 3e-4)
  ...+tune      trained on the tuning questions' TAG (`tag-tune/`, 1000 questions, each question's identical
                responses of one topology kept once) instead of the 200 training questions'

`--base PATH` trains every variant on another backbone (default: the run's policy), e.g. a wider lab model.
Read-only on the run; everything it trains goes to `--work`.

    PYTHONPATH=src python benchmarks/trm_variants.py --run runs/lab-solar --variants answer m-trm answer+lora
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import torch

from reasonscale.config import TaskConfig
from reasonscale.pipelines.solar import read_annotations, trm_records
from reasonscale.tasks import build_task
from reasonscale.train.data import write_jsonl
from reasonscale.train.trm import TRMConfig, train_trm, trm_metrics
from reasonscale.verifiers.trm import TRMVerifier

HEADS = {"answer": 0.0, "m-trm": 1.0}  # variant head -> topology_weight


def records(run: Path, folder: str, task_config: dict, dedup: bool) -> list[dict]:
    """TRM records of one TAG folder of the run (optionally each question x topology's identical texts once)."""
    rows = trm_records(build_task(TaskConfig(**task_config)), read_annotations(run / folder))
    if not dedup:
        return rows
    seen: set[tuple[str, str, str]] = set()
    return [r for r in rows if (key := (r["id"], r["topology"], r["response"])) not in seen and not seen.add(key)]


def config(variant: str, base: str, data: Path, seed: int, out: Path) -> TRMConfig:
    head, *options = variant.split("+")
    if head not in HEADS or set(options) - {"lora", "tune"}:
        raise SystemExit(f"unknown variant '{variant}': answer or m-trm, then +lora and/or +tune")
    lora = "lora" in options
    return TRMConfig(
        model={"path": base},
        data={"path": str(data)},
        trm={"answer_weight": 1.0, "topology_weight": HEADS[head]},
        lora={"enabled": lora, "r": 16, "alpha": 32},
        optim={"learning_rate": 1e-3 if lora else 3e-4, "epochs": 2, "batch_size": 16, "max_length": 512,
               "seed": seed},  # fmt: skip
        log={"logging_steps": 50, "cpu_threads": 1},
        output_dir=str(out),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, default=Path("runs/lab-solar"))
    parser.add_argument("--variants", nargs="+", default=["answer", "m-trm"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--base", help="the backbone (default: the run's policy)")
    parser.add_argument("--work", type=Path, default=Path("runs/bench-trm-variants"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    summary = json.loads((args.run / "solar_summary.json").read_text())["config"]
    base = args.base or summary["model"]["path"]
    test = records(args.run, "tag-test", summary["test_task"], dedup=False)
    prompts, responses = [r["prompt"] for r in test], [r["response"] for r in test]
    print(f"backbone {base}; {len({r['id'] for r in test})} test questions, {len(test)} responses")
    for variant in args.variants:
        tune = "tune" in variant.split("+")
        train = records(args.run, "tag-tune" if tune else "tag-train", summary["tune_task" if tune else "train_task"],
                        dedup=tune)  # fmt: skip
        data = write_jsonl(train, args.work / f"{'tune' if tune else 'train'}.jsonl")
        found = []
        for seed in args.seeds:
            out = args.work / f"{variant}-s{seed}"
            path = train_trm(config(variant, base, data, seed, out), progress=False).path
            scores = TRMVerifier(str(path), None).answer_scores(prompts, responses)
            found.append(metrics := trm_metrics(test, scores, None))
            print(f"{variant} seed {seed} ({len(train)} responses): selection {metrics['selection_accuracy']:.3f} ± "
                  f"{metrics['selection_accuracy_se']:.3f}, within-question AUC {metrics['within_auc']:.3f} ± "
                  f"{metrics['within_auc_se']:.3f}", flush=True)  # fmt: skip
        selection = [m["selection_accuracy"] for m in found]
        auc = [m["within_auc"] for m in found]
        print(f"{variant} mean over {len(found)} seeds: selection {statistics.mean(selection):.3f} "
              f"(spread {max(selection) - min(selection):.3f}), within-question AUC {statistics.mean(auc):.3f} "
              f"(spread {max(auc) - min(auc):.3f})", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
