"""Scheduled jobs: schedule files (`schedule`), cron expressions (`cron`)
and the beat loop with its one-per-schedule lock (`loop`)."""
