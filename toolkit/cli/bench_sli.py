"""``obslab bench sli`` (placeholder until the bench lands)."""
