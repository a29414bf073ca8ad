"""``cfa console``: the operator's console in the browser (FastAPI, served locally)."""
