//! Semantic segmentation: metrics over per-pixel class masks.

pub mod metrics;
