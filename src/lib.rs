//! vitrun: a declarative experiment runner for Vision Transformers.
//!
//! Modules in layers, each importing only modules of the layers above it in this list (never
//! one below, and no two modules each other; `tests/house.rs` holds the code to this):
//!
//! 1. `alloc`, `contract`: process-wide settings, and what crosses a process boundary or the
//!    run store (statuses, exit codes, metric names, the runs folder's layout, event names),
//!    and the words messages share (counts).
//! 2. `config`: the experiment schema, layered loading with provenance, validation.
//! 3. `kernels`, `track`: fused CPU ops under every backbone; the SQLite store and shards.
//! 4. `data`: datasets, augmentations, typed batches, the loader.
//! 5. `model`, `plot`: backbones (the ViT) and checkpoints; charts, rasters, the HTML page.
//! 6. `task`: classification, segmentation, detection — each one's targets, head, loss,
//!    metrics, report panels and predictions.
//! 7. `plan`, `train`: sweeps expanded into trials; one trial's loop and its process.
//! 8. `search`: searches that propose trials one by one from the results so far (TPE,
//!    random), and Pareto fronts of several objectives.
//! 9. `schedule`: trials launched as processes, locally or on SLURM.
//! 10. `report`: reports of trials, experiments and sweeps.
//! 11. `serve`: the reports over HTTP, live while trials run.
//! 12. `cli`: the command line.

pub mod alloc;
pub mod contract;

pub mod config;

pub mod kernels;
pub mod track;

pub mod data;

pub mod model;
pub mod plot;

pub mod task;

pub mod plan;
pub mod train;

pub mod search;

pub mod schedule;

pub mod report;

pub mod serve;

pub mod cli;
