"""`chattune data prepare`: raw sources in, train/val out, every record accounted for.

pipeline.py    the three passes, top to bottom
stages.py      the per-record stages, each on one Conversation (run in worker processes)
whole_set.py   the verdicts only the whole set can give: scope threshold, length limit, split
outputs.py     train/val, ledger, quarantine and stats.json
records.py     a record between the passes, its source, the spool files
"""

from chattune.data.prepare.pipeline import run

__all__ = ["run"]
