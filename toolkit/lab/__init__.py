"""toolkit.lab.runtime."""
