"""Pick the best completed run of the sweep (a runs-summary dependency)."""

import json

runs = json.load(open("runs-summary.json"))["runs"]
done = [run for run in runs if run["status"] == "completed"]
best = min(done, key=lambda run: run["metrics"]["loss"])
print(f"{len(done)} of {len(runs)} runs completed; best: {best['name']}"
      f" lr={best['config']['lr']} loss={best['metrics']['loss']}")
