//! Store records of cluster submissions: each job array, which trial each array index runs,
//! and its cancellation.

use std::path::PathBuf;

use rusqlite::{params, OptionalExtension};

use super::{now, sql_error, Result, Store};

/// A submitted job array.
#[derive(Debug, Clone, PartialEq)]
pub struct JobRecord {
    pub job: String,
    pub experiment: String,
    pub sweep: String,
    /// The submission folder (`runs/<experiment>/slurm/<job>/`).
    pub dir: String,
    pub tasks: i64,
    pub submitted_at: String,
    pub cancelled_at: Option<String>,
}

impl Store {
    /// Records a submitted job array and the trial of each array index, in one transaction.
    pub fn record_job(&mut self, job: &JobRecord, trials: &[String]) -> Result<()> {
        let path = self.path.clone();
        let wrap = sql_error(&path);
        let tx = self.begin()?;
        tx.execute(
            "INSERT INTO slurm_jobs(job, experiment, sweep, dir, tasks, submitted_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                job.job,
                job.experiment,
                job.sweep,
                job.dir,
                job.tasks,
                job.submitted_at
            ],
        )
        .map_err(&wrap)?;
        {
            let mut stmt = tx
                .prepare("INSERT INTO slurm_tasks(job, idx, trial) VALUES (?1, ?2, ?3)")
                .map_err(&wrap)?;
            for (i, trial) in trials.iter().enumerate() {
                stmt.execute(params![job.job, i as i64, trial])
                    .map_err(&wrap)?;
            }
        }
        tx.commit().map_err(&wrap)
    }

    /// The experiment's job arrays, oldest first.
    pub fn jobs(&self, experiment: Option<&str>) -> Result<Vec<JobRecord>> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT job, experiment, sweep, dir, tasks, submitted_at, cancelled_at
                 FROM slurm_jobs WHERE (?1 IS NULL OR experiment = ?1) ORDER BY submitted_at",
            )
            .map_err(|e| self.wrap(e))?;
        let rows = stmt
            .query_map([experiment], |r| {
                Ok(JobRecord {
                    job: r.get(0)?,
                    experiment: r.get(1)?,
                    sweep: r.get(2)?,
                    dir: r.get(3)?,
                    tasks: r.get(4)?,
                    submitted_at: r.get(5)?,
                    cancelled_at: r.get(6)?,
                })
            })
            .map_err(|e| self.wrap(e))?;
        rows.collect::<std::result::Result<_, _>>()
            .map_err(|e| self.wrap(e))
    }

    /// Each trial's newest array task (`JOBID_INDEX`) among the experiment's submissions.
    pub fn newest_tasks(&self, experiment: &str) -> Result<Vec<(String, String)>> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT t.trial, t.job || '_' || t.idx FROM slurm_tasks t
                 JOIN slurm_jobs j ON j.job = t.job WHERE j.experiment = ?1
                 ORDER BY j.submitted_at, CAST(t.job AS INTEGER)",
            )
            .map_err(|e| self.wrap(e))?;
        let rows = stmt
            .query_map([experiment], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(|e| self.wrap(e))?;
        let all: Vec<(String, String)> = rows
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| self.wrap(e))?;
        let mut newest = std::collections::BTreeMap::new();
        for (trial, task) in all {
            newest.insert(trial, task);
        }
        Ok(newest.into_iter().collect())
    }

    /// The SLURM output file of the trial's newest array task (`<submission>/task-N.out`),
    /// when a submission ran it: what the task printed before the trial started.
    pub fn task_output(&self, trial: &str) -> Result<Option<PathBuf>> {
        self.conn
            .query_row(
                "SELECT j.dir, t.idx FROM slurm_tasks t JOIN slurm_jobs j ON j.job = t.job
                 WHERE t.trial = ?1 ORDER BY j.submitted_at DESC, CAST(t.job AS INTEGER) DESC
                 LIMIT 1",
                [trial],
                |r| {
                    Ok(PathBuf::from(r.get::<_, String>(0)?)
                        .join(format!("task-{}.out", r.get::<_, i64>(1)?)))
                },
            )
            .optional()
            .map_err(|e| self.wrap(e))
    }

    /// Notes that a job array was cancelled.
    pub fn mark_job_cancelled(&mut self, job: &str) -> Result<()> {
        self.write(
            "UPDATE slurm_jobs SET cancelled_at = ?2 WHERE job = ?1",
            params![job, now()],
        )
        .map(|_| ())
    }
}
