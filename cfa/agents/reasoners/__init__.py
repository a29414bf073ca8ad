"""Reasoner backends: heuristic (offline default), openai (OpenAI-compatible), scripted."""
