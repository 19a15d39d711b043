"""What an operator sees: Prometheus metrics, traces, structured logs, refusal summaries."""
