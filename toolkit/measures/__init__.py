"""toolkit.measures.definitions."""
