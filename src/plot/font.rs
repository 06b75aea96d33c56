//! The one font every chart and label is drawn in: DejaVu Sans, shipped in `assets/fonts/`
//! (its licence beside it).

/// The font file's bytes.
pub const DEJAVU_SANS: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");
