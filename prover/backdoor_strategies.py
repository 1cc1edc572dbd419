"""Adversaries that ship a backdoored final model (filled in with the backdoor lab)."""

STRATEGIES: dict = {}
