"""A family of lab presets of increasing size trained on the same data, for the pretraining vs test-time FLOPs
exchange (Snell et al. 2024, section 7): `family-1` to `family-4` span 14x in non-embedding parameters (74k, 131k,
443k and 1.05M), about the paper's ratio.

Every member sees the same training stream (same steps, batch size, level mix and seed: the same D tokens), so
their pretraining FLOPs differ only by N. Learning rates shrink with width (ours, not yet tuned); like every preset,
each is defined by its steps, not by a machine's speed. Importing this module
registers the presets in `reasonscale.lab.model.PRESETS`.
"""

from __future__ import annotations

from reasonscale.lab.model import MIX, PRESETS, ModelSpec, Preset, TrainSpec

STEPS, BATCH = 4000, 16


def _member(name: str, hidden: int, layers: int, heads: int, lr: float) -> Preset:
    spec = TrainSpec(max_steps=STEPS, batch_size=BATCH, lr=lr, level_weights=MIX)
    return Preset(name, ModelSpec(hidden_size=hidden, layers=layers, heads=heads, mlp_size=4 * hidden), spec)


FAMILY: dict[str, Preset] = {
    p.name: p
    for p in (
        _member("family-1", 48, 2, 2, 5e-3),
        _member("family-2", 64, 2, 2, 5e-3),
        _member("family-3", 96, 3, 3, 3e-3),
        _member("family-4", 128, 4, 4, 2e-3),
    )
}

for _name, _preset in FAMILY.items():
    PRESETS.setdefault(_name, _preset)
