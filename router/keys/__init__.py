"""API keys: the keys file (hashes only) and the index that turns a bearer key into a caller."""
