"""Launch briefs (kind: launch): see toolkit/drills/launch.py and docs/plans.md."""
