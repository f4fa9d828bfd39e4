"""toolkit.events."""
