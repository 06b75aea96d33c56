//! vitrun: a declarative experiment runner for Vision Transformers.
//!
//! Data flows left to right: `config → plan → schedule → trial → track → report`, the trial
//! using `data`, `model` and `train`. Each module depends only on those to its left.

pub mod alloc;
pub mod cli;
pub mod cluster;
pub mod commands;
pub mod config;
pub mod contract;
pub mod data;
pub mod export;
pub mod kernels;
pub mod model;
pub mod plan;
pub mod predict;
pub mod report;
pub mod schedule;
pub mod task;
pub mod track;
pub mod train;
