"""Config sources: they turn the outside world into Snapshots."""
