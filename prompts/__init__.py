"""Agent prompt templates, shipped with the wheel as ``cfa.prompts``."""
