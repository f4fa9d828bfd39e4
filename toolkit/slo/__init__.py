"""toolkit.slo."""
