"""Python code generated from protos/ (regenerate with `make protos`; a test checks it matches)."""
