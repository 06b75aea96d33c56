//! vitrun's test suite, one module per area, linked into one test binary (each test binary
//! links the whole library; one binary builds and links once). Tests drive the `vitrun`
//! binary on tiny configs, check numerics against committed references (timm, PyTorch,
//! pycocotools), and run the cluster tests against a real SLURM (`.ci/slurm-cluster`).

mod common;

mod augment;
mod cli;
mod compare;
mod compose;
mod config;
mod data;
mod distill;
mod fashion_mnist;
mod finetune;
mod fuzz_config;
mod golden_ids;
mod gpu;
mod hostile;
mod house;
mod image_bomb;
mod kernels;
mod parity;
mod plan;
mod recipe;
mod reliability;
mod report;
mod schedule;
mod search;
mod serve;
mod shards;
mod slurm;
mod sweep;
mod train_e2e;
