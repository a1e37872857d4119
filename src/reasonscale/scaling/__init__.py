"""Question difficulty bins, the compute-optimal policy and the pretraining vs test-time FLOPs exchange
(Snell et al. 2024, sections 3 and 7)."""
