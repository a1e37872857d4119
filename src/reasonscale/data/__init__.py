"""Builders of training data from policy samples: PRM labels from Monte-Carlo rollouts."""
