"""A/B experiments (issue 14), pure: config, assignment hash, statistics, KPI report, guardrails,
and the traffic simulator that knows the truth. No Ray, no Redis."""
