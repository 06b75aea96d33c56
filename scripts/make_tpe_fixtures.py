"""Writes tests/fixtures/tpe/parzen.json: Optuna's TPE Parzen estimator (log densities of
sampled and edge points) on a mixed space with 0, 3 and 30 observations, for
tests/suite/search.rs.

Run from the repository root with a venv that has optuna:  python scripts/make_tpe_fixtures.py
"""

import json

import numpy as np
import optuna
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.samplers._tpe import parzen_estimator
from optuna.samplers._tpe.parzen_estimator import _ParzenEstimator, _ParzenEstimatorParameters
from optuna.samplers._tpe.sampler import default_weights

SPACE = {
    "x": FloatDistribution(-5.0, 10.0),
    "lr": FloatDistribution(1e-5, 1e-1, log=True),
    "depth": IntDistribution(1, 8),
    "opt": CategoricalDistribution(["sgd", "adamw", "lamb"]),
}
DIMS = [
    {"key": "x", "float": [-5.0, 10.0], "log": False},
    {"key": "lr", "float": [1e-5, 1e-1], "log": True},
    {"key": "depth", "int": [1, 8]},
    {"key": "opt", "choice": ["sgd", "adamw", "lamb"]},
]
PARAMS = _ParzenEstimatorParameters(
    prior_weight=1.0,
    consider_magic_clip=True,
    consider_endpoints=False,
    weights=default_weights,
    multivariate=True,
)


def observations(rng, n):
    return {
        "x": rng.uniform(-5.0, 10.0, n),
        "lr": np.exp(rng.uniform(np.log(1e-5), np.log(1e-1), n)),
        "depth": rng.integers(1, 9, n).astype(float),
        "opt": rng.integers(0, 3, n).astype(float),
    }


def stable_argsort():
    """Makes the estimator's argsort stable. Observations with equal values (whole numbers
    often are) get their bandwidths by sorted position, and numpy's default argsort leaves the
    order of ties unspecified (its AVX-512 and AVX2 sorts differ), so Optuna's densities depend
    on the CPU; vitrun sorts stably, and so does this reference."""
    argsort = np.argsort

    class Numpy:
        def __getattr__(self, name):
            return getattr(np, name)

        @staticmethod
        def argsort(a, *args, **kwargs):
            return argsort(a, kind="stable")

    parzen_estimator.np = Numpy()


def main():
    stable_argsort()
    rng = np.random.default_rng(7)
    cases = []
    for n in [0, 3, 30]:
        obs = observations(rng, n)
        pe = _ParzenEstimator(obs, SPACE, PARAMS)
        drawn = pe.sample(np.random.RandomState(n), 25)
        edges = {"x": np.array([-5.0, 10.0]), "lr": np.array([1e-5, 1e-1]),
                 "depth": np.array([1.0, 8.0]), "opt": np.array([0.0, 2.0])}
        points = {k: np.concatenate([drawn[k], edges[k]]) for k in SPACE}
        log_pdf = pe.log_pdf(points)
        cases.append({
            "observations": [[float(obs[k][i]) for k in SPACE] for i in range(n)],
            "points": [[float(points[k][i]) for k in SPACE] for i in range(len(log_pdf))],
            "log_pdf": [float(v) for v in log_pdf],
        })
    out = {"optuna": optuna.__version__, "dims": DIMS, "cases": cases}
    with open("tests/fixtures/tpe/parzen.json", "w") as f:
        json.dump(out, f, indent=1)
    print(f"wrote {len(cases)} cases (optuna {optuna.__version__})")


if __name__ == "__main__":
    main()
