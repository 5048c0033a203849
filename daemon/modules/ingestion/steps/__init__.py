"""The steps of the pipeline, one file each, all of one shape (:mod:`.contract`).

Each module holds one step's work: what it reads, what it computes (off the event loop
and outside any transaction), and what it decides and writes in the runner's one
transaction. The runner (:mod:`daemon.modules.ingestion.runner`) drives them alike.
This package imports nothing itself, so that its modules can be imported one by one.
"""
