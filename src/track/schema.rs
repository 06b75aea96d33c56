//! The run store's schema, versioned in `PRAGMA user_version` with forward migrations.

/// Migrations in order; migration `i` brings the store from version `i` to `i + 1`.
pub const MIGRATIONS: [&str; 6] = [
    r#"
CREATE TABLE experiments (
    name        TEXT PRIMARY KEY,
    file        TEXT,
    created_at  TEXT NOT NULL
);
CREATE TABLE trials (
    id              TEXT PRIMARY KEY,
    experiment      TEXT NOT NULL REFERENCES experiments(name),
    config          TEXT NOT NULL,
    seed            INTEGER NOT NULL,
    status          TEXT NOT NULL CHECK (status IN
                        ('queued','running','finished','failed','diverged','pruned')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    device          TEXT,
    host            TEXT,
    pid             INTEGER,
    git_commit      TEXT,
    vitrun_version  TEXT,
    burn_version    TEXT,
    created_at      TEXT NOT NULL,
    started_at      TEXT,
    ended_at        TEXT,
    error           TEXT
);
CREATE INDEX trials_by_experiment ON trials(experiment);
CREATE TABLE sweep_trials (
    sweep   TEXT NOT NULL,
    trial   TEXT NOT NULL REFERENCES trials(id),
    PRIMARY KEY (sweep, trial)
);
CREATE TABLE params (
    trial   TEXT NOT NULL REFERENCES trials(id),
    key     TEXT NOT NULL,
    value   TEXT NOT NULL,
    PRIMARY KEY (trial, key)
) WITHOUT ROWID;
CREATE TABLE metrics (
    trial      TEXT NOT NULL REFERENCES trials(id),
    split      TEXT NOT NULL,
    name       TEXT NOT NULL,
    step       INTEGER NOT NULL,
    epoch      INTEGER NOT NULL,
    value      REAL NOT NULL,
    wall_time  REAL NOT NULL,
    PRIMARY KEY (trial, split, name, step)
) WITHOUT ROWID;
CREATE TABLE artifacts (
    trial       TEXT NOT NULL REFERENCES trials(id),
    kind        TEXT NOT NULL,
    path        TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    PRIMARY KEY (trial, kind, path)
);
CREATE TABLE events (
    trial    TEXT NOT NULL REFERENCES trials(id),
    time     TEXT NOT NULL,
    kind     TEXT NOT NULL,
    message  TEXT NOT NULL
);
"#,
    // 2: failure kinds (crashed, oom, interrupted, stale) in the status check. SQLite cannot
    // alter a CHECK, so the table is rebuilt (foreign keys are off while migrations run).
    r#"
CREATE TABLE trials_v2 (
    id              TEXT PRIMARY KEY,
    experiment      TEXT NOT NULL REFERENCES experiments(name),
    config          TEXT NOT NULL,
    seed            INTEGER NOT NULL,
    status          TEXT NOT NULL CHECK (status IN
                        ('queued','running','finished','failed','crashed','oom','diverged',
                         'interrupted','stale','pruned')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    device          TEXT,
    host            TEXT,
    pid             INTEGER,
    git_commit      TEXT,
    vitrun_version  TEXT,
    burn_version    TEXT,
    created_at      TEXT NOT NULL,
    started_at      TEXT,
    ended_at        TEXT,
    error           TEXT
);
INSERT INTO trials_v2 SELECT * FROM trials;
DROP TABLE trials;
ALTER TABLE trials_v2 RENAME TO trials;
CREATE INDEX trials_by_experiment ON trials(experiment);
"#,
    // 3: clusters. `preempted` joins the statuses; a trial row remembers its SLURM job task;
    // shards folded into the store are tracked by how far they were read; submitted job arrays
    // and which trial each array index runs.
    r#"
CREATE TABLE trials_v3 (
    id              TEXT PRIMARY KEY,
    experiment      TEXT NOT NULL REFERENCES experiments(name),
    config          TEXT NOT NULL,
    seed            INTEGER NOT NULL,
    status          TEXT NOT NULL CHECK (status IN
                        ('queued','running','finished','failed','crashed','oom','diverged',
                         'interrupted','stale','pruned','preempted')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    device          TEXT,
    host            TEXT,
    pid             INTEGER,
    git_commit      TEXT,
    vitrun_version  TEXT,
    burn_version    TEXT,
    created_at      TEXT NOT NULL,
    started_at      TEXT,
    ended_at        TEXT,
    error           TEXT,
    job             TEXT
);
INSERT INTO trials_v3 SELECT *, NULL FROM trials;
DROP TABLE trials;
ALTER TABLE trials_v3 RENAME TO trials;
CREATE INDEX trials_by_experiment ON trials(experiment);
CREATE TABLE shard_folds (
    path       TEXT PRIMARY KEY,
    trial      TEXT NOT NULL,
    bytes      INTEGER NOT NULL,
    records    INTEGER NOT NULL,
    folded_at  TEXT NOT NULL
);
CREATE TABLE slurm_jobs (
    job           TEXT PRIMARY KEY,
    experiment    TEXT NOT NULL REFERENCES experiments(name),
    sweep         TEXT NOT NULL,
    dir           TEXT NOT NULL,
    tasks         INTEGER NOT NULL,
    submitted_at  TEXT NOT NULL,
    cancelled_at  TEXT
);
CREATE TABLE slurm_tasks (
    job    TEXT NOT NULL REFERENCES slurm_jobs(job),
    idx    INTEGER NOT NULL,
    trial  TEXT NOT NULL REFERENCES trials(id),
    PRIMARY KEY (job, idx)
);
CREATE INDEX slurm_tasks_by_trial ON slurm_tasks(trial);
"#,
    // 4: each trial records the name of its task's main validation metric (what `best` in
    // `ls` and sweeps means), so readers need not know the tasks. Trials recorded before
    // take the main metric their task had then.
    r#"
ALTER TABLE trials ADD COLUMN main_metric TEXT;
UPDATE trials SET main_metric = (CASE
    (SELECT value FROM params p WHERE p.trial = trials.id AND p.key = 'head.task')
    WHEN 'segmentation' THEN 'miou'
    WHEN 'detection' THEN 'map50'
    ELSE 'top1' END);
"#,
    // 5: a trial row records which attempt holds it (`direct`, or `shard:<trial>/<attempt
    // file>`), so that an older attempt's shard never writes over a newer one; fold progress is
    // kept by what a shard is, not by the path it was found under (`shard_folds` is moved into
    // `shard_progress` by `rekey_shard_progress` and dropped).
    r#"
ALTER TABLE trials ADD COLUMN claim TEXT;
CREATE TABLE shard_progress (
    shard      TEXT PRIMARY KEY,
    trial      TEXT NOT NULL,
    bytes      INTEGER NOT NULL,
    records    INTEGER NOT NULL,
    folded_at  TEXT NOT NULL
);
"#,
    // 6: proposing searches (`method = "tpe"` or `"random"`). Each proposal of a sweep is
    // numbered, belongs to one search (the fingerprint of the experiment's base config, space,
    // method, objective and seed: editing them starts a new search), and keeps its point and the
    // history it was made from (JSON), so that it replays exactly.
    r#"
CREATE TABLE proposals (
    sweep        TEXT NOT NULL,
    number       INTEGER NOT NULL,
    search       TEXT NOT NULL,
    trial        TEXT NOT NULL REFERENCES trials(id),
    point        TEXT NOT NULL,
    history      TEXT NOT NULL,
    proposed_at  TEXT NOT NULL,
    PRIMARY KEY (sweep, number)
);
CREATE INDEX proposals_by_search ON proposals(search);
"#,
];

/// The version whose migration needs [`rekey_shard_progress`] after its SQL.
pub const SHARD_KEYS_VERSION: usize = 5;

/// The main metric's name of a trial row `t` whose `main_metric` is unset: one folded from
/// the shard of a vitrun older than the column (the tasks of that time, by `head.task`).
pub const MAIN_METRIC_OF_OLD_TRIALS: &str = "(CASE (SELECT value FROM params p WHERE p.trial = t.id AND p.key = 'head.task') WHEN 'segmentation' THEN 'miou' WHEN 'detection' THEN 'map50' ELSE 'top1' END)";
