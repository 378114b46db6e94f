"""Storage backends, one module each: the Delta Lake (lake.py) and QuestDB (questdb.py)."""
