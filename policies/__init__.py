"""Risk policies, shipped with the wheel as ``cfa.policies``."""
