"""obslab toolkit: turns the lab's telemetry into SLIs, budgets, alerts, verdicts and stories."""

__version__ = "0.1.0"
