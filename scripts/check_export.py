"""Reads one `vitrun export-metrics` written as Parquet, CSV and JSON with pandas (pyarrow for
Parquet) and checks that the three hold the same table: what a pandas user gets in one line.

    vitrun export-metrics EXP --out m.parquet; vitrun export-metrics EXP --out m.csv
    vitrun export-metrics EXP --out m.json
    python3 scripts/check_export.py m.parquet m.csv m.json

Needs pandas and pyarrow; the test suite reads the files back in Rust instead.
"""
import sys

import pandas as pd

parquet, csv, json = sys.argv[1:4]
frames = {
    "parquet": pd.read_parquet(parquet),
    "csv": pd.read_csv(csv),
    "json": pd.read_json(json, convert_dates=False),
}
key = ["trial", "split", "name", "step"]
base = frames["parquet"].sort_values(key).reset_index(drop=True)
for name, frame in frames.items():
    frame = frame.sort_values(key).reset_index(drop=True)[base.columns]
    pd.testing.assert_frame_equal(base, frame, check_dtype=False, check_exact=False, rtol=1e-12)
    print(f"{name}: {frame.shape[0]} rows x {frame.shape[1]} columns, equal to parquet")
print("columns:", ", ".join(f"{c} ({t})" for c, t in base.dtypes.items()))
