"""TAG: topo labels, win rates with ties, difficulty segments, export round trip, and `reasonscale annotate`."""

from __future__ import annotations

import json

import pytest
import yaml
from datasets import load_from_disk
from test_search import NoisyLabPolicy
from typer.testing import CliRunner

from reasonscale.cli import app
from reasonscale.config_loading import load_config
from reasonscale.data.tag import SegmentConfig, annotate, save_dataset, summarize_tag, to_dataset, win_rates
from reasonscale.pipelines.annotate import AnnotateConfig, run_annotation

USAGE = {"generated_tokens": 10, "flops": 100.0}


def hand_made_rows() -> list[dict]:
    """Three questions x two topologies x two responses; hard labels chosen by hand."""
    hard = {  # question -> topology -> hard labels of its responses
        "q1": {"cot": [1, 1], "tot": [1, 0]},  # cot wins
        "q2": {"cot": [0, 1], "tot": [1, 0]},  # tie: 0.5 each
        "q3": {"cot": [0, 0], "tot": [0, 0]},  # every topology below 0.3: hard
    }
    return [
        {
            "id": q, "question": q, "level": int(q[1]), "reference": "1", "topology": t, "variant": t,
            "settings": "{}", "response": i, "text": f"{q}-{t}-{i}", "answer": "1" if h else "2", "hard_label": h,
            "usage": {**USAGE, "generated_tokens": 10 * (1 + (t == "tot"))},
        }
        for q, by in hard.items() for t, labels in by.items() for i, h in enumerate(labels)
    ]  # fmt: skip


def test_topo_labels_win_rates_with_ties_and_segments():
    rows = annotate(hand_made_rows(), SegmentConfig(hard_below=0.3, easy_from=0.9))
    label = {(r["id"], r["variant"]): r["topo_label"] for r in rows}
    assert label == {("q1", "cot"): 1.0, ("q1", "tot"): 0.5, ("q2", "cot"): 0.5, ("q2", "tot"): 0.5,
                     ("q3", "cot"): 0.0, ("q3", "tot"): 0.0}  # fmt: skip
    assert {r["id"]: r["segment"] for r in rows} == {"q1": "medium", "q2": "medium", "q3": "hard"}
    summary = summarize_tag(rows)
    cot, tot = summary["variants"]["cot"], summary["variants"]["tot"]
    assert cot["win_rate"] == pytest.approx((1 + 0.5 + 0.5) / 3) and tot["win_rate"] == pytest.approx(1 / 3)
    assert (cot["sole_wins"], tot["sole_wins"]) == (1, 0)
    assert cot["accuracy"] == pytest.approx(0.5) and tot["accuracy"] == pytest.approx(1 / 3)
    assert cot["accuracy_se"] == pytest.approx((1 / 6) ** 0.5 / 3**0.5)  # topo labels 1, 0.5, 0: variance 1/6
    assert tot["vs_best"] == pytest.approx(-0.5 / 3) and cot["vs_best"] == 0.0  # cot is best; gaps -0.5, 0, 0
    assert cot["generated_tokens"] == 10 and tot["generated_tokens"] == 20
    assert summary["segments"] == {"easy": 0, "medium": 2, "hard": 1}
    assert summary["segments_by_level"] == {"1": {"easy": 0, "medium": 1, "hard": 0},
                                            "2": {"easy": 0, "medium": 1, "hard": 0},
                                            "3": {"easy": 0, "medium": 0, "hard": 1}}  # fmt: skip
    assert summary["oracle_topology_accuracy"] == pytest.approx(0.5)  # (1 + 0.5 + 0) / 3
    assert summary["headroom"] == pytest.approx(0.0)
    easy = annotate(hand_made_rows(), SegmentConfig(hard_below=0.3, easy_from=0.5))
    assert {r["id"]: r["segment"] for r in easy} == {"q1": "easy", "q2": "easy", "q3": "hard"}


def test_win_rates_split_a_three_way_tie():
    assert win_rates({"q": {"a": 0.5, "b": 0.5, "c": 0.5}}) == pytest.approx({"a": 1 / 3, "b": 1 / 3, "c": 1 / 3})


def test_segment_thresholds_must_be_ordered():
    with pytest.raises(ValueError, match="easy_from"):
        SegmentConfig(hard_below=0.6, easy_from=0.5)


def test_export_round_trips_through_datasets(tmp_path):
    rows = annotate(hand_made_rows(), SegmentConfig())
    assert to_dataset(rows).to_list() == rows
    save_dataset(rows, tmp_path / "ds")
    save_dataset(rows[:4], tmp_path / "ds")  # replaced whole
    assert load_from_disk(str(tmp_path / "ds")).to_list() == rows[:4]


def lab_config(tmp_path) -> AnnotateConfig:
    return AnnotateConfig.model_validate(
        {
            "model": {"path": "noisy"},
            "task": {"name": "lab", "lab": {"levels": [1, 4], "per_level": 3}},
            "sampling": {"temperature": 0.8, "max_tokens": 200},
            "topologies": [
                {"name": "cot", "n": 1},
                {"name": "tot", "n": 2, "verifier": "oracle"},
                {"name": "got", "n": 2, "verifier": "oracle", "neighbours": 1},
                {"name": "got", "n": 2, "verifier": "oracle", "neighbours": 2},
                {"name": "mcts", "n": 8, "verifier": "oracle"},
            ],
            "responses": 2,
            "output_dir": str(tmp_path / "tag"),
        }
    )


def test_annotation_labels_every_response_and_resumes(tmp_path):
    cfg = lab_config(tmp_path)
    engines: list[NoisyLabPolicy] = []

    def fresh(_):
        engines.append(NoisyLabPolicy())
        return engines[-1]

    summary = run_annotation(cfg, show_progress=False, engine_factory=fresh)
    rows = [json.loads(line) for line in (tmp_path / "tag" / "annotations.jsonl").read_text().splitlines()]
    assert len(rows) == 6 * 5 * 2
    variants = {"cot", "tot[oracle]", "got[oracle,nb=1]", "got[oracle,nb=2]", "mcts[oracle]"}
    assert {r["variant"] for r in rows} == variants
    assert all(r["usage"]["generated_tokens"] > 0 and r["text"] for r in rows)
    assert {r["response"] for r in rows} == {0, 1}
    one = lab_config(tmp_path).model_copy(update={"responses": 1, "output_dir": str(tmp_path / "one")})
    single = NoisyLabPolicy()
    run_annotation(one, show_progress=False, engine_factory=lambda c: single)
    assert len(engines[0].returned) == 2 * len(single.returned) > 0  # each response draws its own samples (seed)
    tag = summary["tag"]
    assert tag["questions"] == 6 and sum(tag["segments"].values()) == 6
    assert tag["oracle_topology_accuracy"] >= tag["best_single"]["accuracy"]
    assert tag["variants"]["tot[oracle]"]["accuracy"] > tag["variants"]["cot"]["accuracy"]
    assert load_from_disk(str(tmp_path / "tag" / "dataset")).to_list() == rows
    again = run_annotation(cfg, show_progress=False, engine_factory=fresh)
    assert engines[-1].calls == 0 and again["tag"] == tag  # resumed from the store: no model call
    report = (tmp_path / "tag" / "tag_report.md").read_text()
    assert "| mcts[oracle] |" in report and f"headroom {tag['headroom']:.3f}" in report


def test_annotate_command_runs_a_chat_model_on_a_word_problem(tmp_path, tiny_model_dir):
    data = tmp_path / "q.jsonl"
    lines = [json.dumps({"question": f"What is {i} plus 1?", "answer": str(i + 1)}) for i in range(2)]
    data.write_text("\n".join(lines) + "\n")
    config = tmp_path / "tag.yaml"
    config.write_text(yaml.safe_dump({
        "model": {"path": str(tiny_model_dir), "chat_template": True, "device": "cpu"},
        "task": {"name": "jsonl", "path": str(data), "grader": "numeric"},
        "sampling": {"max_tokens": 8},
        "topologies": [{"name": "cot", "n": 1}],
        "responses": 2,
        "output_dir": str(tmp_path / "out"),
    }))  # fmt: skip
    result = CliRunner().invoke(app, ["annotate", str(config), "--quiet"])
    assert result.exit_code == 0, result.output
    rows = load_from_disk(str(tmp_path / "out" / "dataset")).to_list()
    assert len(rows) == 2 * 2 and {r["variant"] for r in rows} == {"cot"}
    assert all(r["usage"]["generated_tokens"] > 0 for r in rows)
    bad = CliRunner().invoke(app, ["annotate", str(config), "--set", "topologies.0.childen=2"])
    assert bad.exit_code == 2 and "childen" in bad.output


def test_the_lab_example_config_is_valid():
    cfg = load_config("examples/lab_tag.yaml", [], AnnotateConfig)
    assert {t.name for t in cfg.topologies} == {"cot", "tot", "got", "mcts", "weighted_best_of_n"}


def test_a_grid_expands_every_topology_that_has_the_setting(tmp_path):
    cfg = lab_config(tmp_path).model_copy(update={"grid": {"children": [2, 3], "depth": [4]}})
    variants = cfg.variants()
    assert [(v.name, getattr(v, "children", None), getattr(v, "depth", None)) for v in variants] == [
        ("cot", None, None), ("tot", 2, 4), ("tot", 3, 4), ("got", 2, 4), ("got", 3, 4), ("got", 2, 4),
        ("got", 3, 4), ("mcts", 2, 4), ("mcts", 3, 4),
    ]  # fmt: skip
    assert len(cfg.response_run(0).strategies) == 9
    with pytest.raises(ValueError, match="grid.childen"):
        AnnotateConfig.model_validate({**lab_config(tmp_path).model_dump(), "grid": {"childen": [2]}})


def test_a_topology_with_budgets_gives_one_variant_per_budget(tmp_path):
    cfg = lab_config(tmp_path).model_copy(
        update={"topologies": [AnnotateConfig.model_validate(
            {**lab_config(tmp_path).model_dump(), "topologies": [{"name": "cot", "budgets": [1, 4]}]}
        ).topologies[0], lab_config(tmp_path).topologies[1]], "responses": 1}
    )  # fmt: skip
    run_annotation(cfg, show_progress=False, engine_factory=lambda c: NoisyLabPolicy())
    rows = [json.loads(line) for line in (tmp_path / "tag" / "annotations.jsonl").read_text().splitlines()]
    assert {r["variant"] for r in rows} == {"cot@1", "cot@4", "tot[oracle]"}
    tokens = {v: sum(r["usage"]["generated_tokens"] for r in rows if r["variant"] == v) for v in ("cot@1", "cot@4")}
    assert tokens["cot@4"] > 2 * tokens["cot@1"] > 0  # four chains voting, charged as four


def test_the_terminal_table_shows_standard_errors_and_the_gap_to_the_best():
    from rich.console import Console

    from reasonscale.tables import tag_table

    variant = {"accuracy": 0.5, "accuracy_se": 0.05, "vs_best": -0.1, "vs_best_se": 0.02,
               "accuracy_by_level": {"1": 0.5}, "win_rate": 0.4, "generated_tokens": 60.0}
    tag = {"questions": 10, "segments": {"easy": 10}, "oracle_topology_accuracy": 0.6,
           "best_single": {"accuracy": 0.5}, "variants": {"cot": variant}}
    console = Console(width=200, record=True)
    console.print(tag_table(tag))
    text = console.export_text()
    assert "0.500 ± 0.050" in text and "-0.100 ± 0.020" in text
