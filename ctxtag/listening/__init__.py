"""The listening-data plane: the date-partitioned event lake, daily user snapshots, the history embedding."""
