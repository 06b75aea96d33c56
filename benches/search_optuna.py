"""Optuna's side of `just bench-search`: trials until Optuna's TPE (default TPESampler, seeded)
reaches the target on the problems of benches/search.rs, defined the same way there; the
median over 50 seeds. Prints lines in the format of benches/search.rs.
"""

import csv
import math
import os
import statistics
import warnings

import optuna

SEEDS = 50
HERE = os.path.dirname(os.path.abspath(__file__))


def branin(trial):
    x = trial.suggest_float("x", -5.0, 10.0)
    y = trial.suggest_float("y", 0.0, 15.0)
    pi = math.pi
    return ((y - 5.1 / (4 * pi * pi) * x * x + 5.0 / pi * x - 6.0) ** 2
            + 10.0 * (1.0 - 1.0 / (8.0 * pi)) * math.cos(x) + 10.0)


def mixed(trial):
    opt = trial.suggest_categorical("opt", ["sgd", "adam", "lamb"])
    lr = trial.suggest_float("lr", 1e-5, 1.0, log=True)
    layers = trial.suggest_int("layers", 1, 8)
    base, best_lr = {"sgd": (0.0, -1.5), "adam": (0.05, -3.0), "lamb": (0.1, -2.5)}[opt]
    momentum = 0.0
    if opt == "sgd":
        momentum = 5.0 * (trial.suggest_float("momentum", 0.0, 0.99) - 0.9) ** 2
    return base + 0.5 * (math.log10(lr) - best_lr) ** 2 + 0.1 * abs(layers - 5) + momentum


def table_problem():
    with open(os.path.join(HERE, "search", "fmnist_grid.csv")) as f:
        rows = list(csv.DictReader(f))
    table = {(r["lr"], r["weight_decay"], r["drop_path"], r["recipe"]): float(r["val_top1"])
             for r in rows}

    def column(key):
        seen = []
        for r in rows:
            if r[key] not in seen:
                seen.append(r[key])
        return seen

    choices = {k: column(k) for k in ["lr", "weight_decay", "drop_path", "recipe"]}

    def objective(trial):
        key = tuple(trial.suggest_categorical(k, v) for k, v in choices.items())
        return table[key]

    return objective, max(table.values()) - 0.5


def trials_to_target(objective, direction, target, budget, seed):
    sampler = optuna.samplers.TPESampler(seed=seed)
    study = optuna.create_study(direction=direction, sampler=sampler)
    for n in range(1, budget + 1):
        trial = study.ask()
        value = objective(trial)
        study.tell(trial, value)
        if (value <= target) if direction == "minimize" else (value >= target):
            return n
    return budget + 1


def main():
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.simplefilter("ignore")
    table, table_target = table_problem()
    problems = [
        ("branin", branin, "minimize", 0.5, 100),
        ("mixed", mixed, "minimize", 0.1, 100),
        ("fmnist-grid", table, "maximize", table_target, 135),
    ]
    for name, objective, direction, target, budget in problems:
        counts = [trials_to_target(objective, direction, target, budget, s) for s in range(SEEDS)]
        reached = sum(c <= budget for c in counts)
        print(f"search {name} optuna-tpe trials-to-target median: {statistics.median(counts)} "
              f"(reached {reached}/{SEEDS} within {budget})")


if __name__ == "__main__":
    main()
