"""reasonscale: spend compute wisely to make language models reason better."""

import os

# Idle OpenMP threads sleep instead of spinning: on a small shared CPU, spinning threads slowed tiny-model
# training and generation several-fold. Set before torch is imported; a user's own setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
