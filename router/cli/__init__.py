"""`cascade`: the command line (serve, policy, classify, keys, ledger, audit, openapi)."""
