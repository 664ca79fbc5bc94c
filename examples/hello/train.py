"""A tiny "training" script: config flags in, loss curve out, summary written."""

import json
import math
import time

lr = 0.1
epochs = 5
seed = 1
pause = 0.1  # seconds per epoch, so a run is long enough to watch

loss = 1.0
for epoch in range(1, epochs + 1):
    loss = loss * math.exp(-lr * (1 + seed % 3))
    print(f"epoch {epoch}: loss={loss:.4f}", flush=True)
    time.sleep(pause)

with open("summary.json", "w") as f:
    json.dump({"metrics": {"loss": round(loss, 6)}, "attributes": {"lr": lr}}, f)
