//! Drawing: charts, rasters, attention maps, PCA and the report's HTML page. What the report
//! and each task's panels draw with; it reads no store and trains nothing.

pub mod attention;
pub mod charts;
mod font;
pub mod html;
pub mod interactive;
pub mod pca;
pub mod raster;

pub use attention::Fusion;
pub use html::{Figure, Section, Table};
