"""The run keeper: one small process per running run (see `keeper.Keeper`).

`python -m gage_worker.keeper JOB` runs one; `gage_worker.launch` starts it.
"""
