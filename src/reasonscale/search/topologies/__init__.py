"""Reasoning topologies (SOLAR): chain (`cot`), tree (`tot`), graph (`got`) of thoughts and MCTS, one module each,
registered as ordinary strategies so that they run on any engine and verifier and count their compute alike."""

from reasonscale.search.topologies import cot, got, mcts, tot  # noqa: F401  (registers the strategies)
