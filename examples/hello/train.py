"""A tiny "training" script: config flags in, loss curve out, summary written."""

import json
import math
import time

lr = 0.1
epochs = 5
batch = 32
seed = 1
pause = 0.1  # seconds per epoch, so a run is long enough to watch


def main():
    loss = 1.0
    for epoch in range(1, epochs + 1):
        loss *= math.exp(-lr * (1 + seed % 3) * (batch / 32) ** 0.5)
        print(f"epoch {epoch}: loss={loss:.4f}", flush=True)
        time.sleep(pause)
    summary = {"metrics": {"loss": round(loss, 6)}, "attributes": {"lr": lr, "batch": batch}}
    with open("summary.json", "w") as f:
        json.dump(summary, f)


main()
