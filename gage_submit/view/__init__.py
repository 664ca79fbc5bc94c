"""`gage-submit view`: a web page over the shared runs dir (the `view` extra).

No broker and no database: every page is read from the runs dir, as
`list`, `show`, `logs -f` and `compare` read it.

- `data`: what the pages show, read from the runs dir (no web framework):
  the runs table (`runs_page`, O(shown) in the default order), one run
  (`run_detail`, its output and files, confined to the run's dir), compare
  (`compare_table`, CSV), the pool (`pool_snapshot`, O(active)).
- `live`: what changed since the last look (rows, a run, its output, the
  pool), polled by the server for the server-sent event streams.
- `guard`: the access token, the actions token, the allowed hosts and
  the security headers (a Content-Security-Policy without inline script).
- `app`: the Starlette application (pages, JSON, event streams, actions).
- `serve`: binding, the start message and uvicorn.

Importing this package imports nothing; `gage_submit.commands.view`
checks for the extra before loading `app`.
"""
