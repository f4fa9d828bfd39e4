"""toolkit.analysis."""
