"""Writes benches/search/fmnist_grid.csv from a run store holding the finished sweep of
benches/search/fmnist_grid.toml: each trial's four settings and its best validation top-1 (in
points). Standard library only.

    python3 benches/search/export_grid.py RUNS_DIR/vitrun.sqlite
"""

import csv
import sqlite3
import sys

RECIPES = {("false", "false"): "plain", ("true", "false"): "flip", ("true", "true"): "erase"}


def main():
    store = sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True)
    param = "(SELECT value FROM params p WHERE p.trial = t.id AND p.key = '{}')"
    keys = ["optimizer.lr", "optimizer.weight_decay", "model.drop_path",
            "augment.hflip.enabled", "augment.random_erasing.enabled"]
    query = f"""
        SELECT {", ".join(param.format(k) for k in keys)},
               (SELECT MAX(value) FROM metrics m
                WHERE m.trial = t.id AND m.split = 'val' AND m.name = 'top1')
        FROM trials t JOIN sweep_trials s ON s.trial = t.id
        WHERE s.sweep = 'search_table_fmnist' AND t.status = 'finished'
        ORDER BY 1, 2, 3, 4, 5"""
    rows = store.execute(query).fetchall()
    if len(rows) != 135:
        sys.exit(f"expected 135 finished trials, found {len(rows)}: let the sweep finish")
    with open("benches/search/fmnist_grid.csv", "w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["lr", "weight_decay", "drop_path", "recipe", "val_top1"])
        for lr, wd, dp, flip, erase, top1 in rows:
            out.writerow([lr, wd, dp, RECIPES[(flip, erase)], f"{100 * top1:.2f}"])
    print(f"wrote benches/search/fmnist_grid.csv: {len(rows)} trials")


if __name__ == "__main__":
    main()
