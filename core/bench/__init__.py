"""`rt bench`: one bundle at every isolation level, side by side with peer runtimes.

stats: summaries; targets: what is measured and how (plugins add their own);
runner: the measuring loop, progress and cleanup; report: table, JSON and charts.
"""
