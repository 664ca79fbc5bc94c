"""Write a small data set: y = 3x + 1 with noise."""

import os
import random

rows = 200
seed = 1

random.seed(seed)
os.makedirs("data", exist_ok=True)
with open("data/train.csv", "w") as f:
    f.write("x,y\n")
    for _ in range(rows):
        x = random.uniform(-1, 1)
        f.write(f"{x:.5f},{3 * x + 1 + random.gauss(0, 0.1):.5f}\n")
print(f"wrote {rows} rows to data/train.csv")
