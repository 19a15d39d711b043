"""Shadow checks: served answers checked against a reference off the request path, and the
thresholds re-tuned from them (router/shadow/runner.py explains the three kinds)."""
