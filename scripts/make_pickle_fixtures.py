"""Writes tests/fixtures/reduce_system.pth: a PyTorch-style zip checkpoint whose pickle would run
`touch /tmp/vitrun-pickle-ran` through os.system if anything unpickled it with Python's rules.
vitrun must refuse it, naming the object's type, and the file must never appear.

    python3 scripts/make_pickle_fixtures.py
"""
import os
import pickle
import zipfile


class RunsACommand:
    def __reduce__(self):
        return (os.system, ("touch /tmp/vitrun-pickle-ran",))


here = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures")
data = pickle.dumps({"model": {"cls_token": RunsACommand()}}, protocol=2)
with zipfile.ZipFile(os.path.join(here, "reduce_system.pth"), "w") as z:
    z.writestr("archive/data.pkl", data)
    z.writestr("archive/version", "3\n")
