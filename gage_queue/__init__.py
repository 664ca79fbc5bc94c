"""gage_queue: the Celery-free core of gage-queue.

What a laptop imports to submit, list, show and cancel runs, and what the
worker builds on: the one run state model (`states`), the run record and
its locks (`record`, `locks`), every queue path in the runs dir
(`layout`), settings, errors and exit codes, and the brokers (`broker/`:
building and sending task messages, the embedded broker). No module here
imports Celery.
"""
