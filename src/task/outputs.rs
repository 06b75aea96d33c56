//! The encodings of `vitrun predict`'s files: class masks as palette PNGs (pixel value = class
//! id, colours as in the report), pictures as RGB PNGs, and probability maps as NumPy `.npy`.

use anyhow::Context;
use npyz::WriterBuilder;

use super::panels::colour;
use crate::plot::raster::Rgb;

/// The colour of each class id in masks: black for class 0 (the background), then the
/// report's class colours.
pub fn mask_palette(classes: usize) -> Vec<[u8; 3]> {
    (0..classes)
        .map(|k| if k == 0 { [0, 0, 0] } else { colour(k - 1) })
        .collect()
}

/// An 8-bit palette PNG of a `width × height` class mask: each pixel holds its class id, so
/// NumPy/PIL read the ids back (`np.array(Image.open(f))`) and viewers show `palette`'s colours.
pub fn mask_png(
    labels: &[u8],
    width: usize,
    height: usize,
    palette: &[[u8; 3]],
) -> anyhow::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    let mut encoder = png::Encoder::new(&mut bytes, width as u32, height as u32);
    encoder.set_color(png::ColorType::Indexed);
    encoder.set_depth(png::BitDepth::Eight);
    let mut entries: Vec<u8> = palette.iter().flatten().copied().collect();
    entries.resize(3 * 256, 0);
    encoder.set_palette(entries);
    encoder
        .write_header()
        .and_then(|mut w| w.write_image_data(labels))
        .with_context(|| format!("cannot encode a {width}×{height} mask as PNG"))?;
    Ok(bytes)
}

/// An RGB PNG of `picture`.
pub fn rgb_png(picture: &Rgb) -> anyhow::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    let mut encoder = png::Encoder::new(&mut bytes, picture.width as u32, picture.height as u32);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    encoder
        .write_header()
        .and_then(|mut w| w.write_image_data(&picture.pixels))
        .with_context(|| {
            format!(
                "cannot encode a {}×{} picture as PNG",
                picture.width, picture.height
            )
        })?;
    Ok(bytes)
}

/// A little-endian float32 `.npy` array of `shape` holding `values` (C order).
pub fn npy_f32(shape: &[usize], values: &[f32]) -> anyhow::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    let dims: Vec<u64> = shape.iter().map(|&d| d as u64).collect();
    let mut writer = npyz::WriteOptions::new()
        .default_dtype()
        .shape(&dims)
        .writer(&mut bytes)
        .begin_nd()
        .context("cannot start a .npy array")?;
    writer
        .extend(values.iter().copied())
        .context("cannot write a .npy array")?;
    writer.finish().context("cannot finish a .npy array")?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The mask PNG reads back as the class ids with the palette's colours.
    #[test]
    fn a_mask_png_holds_class_ids_and_the_palette() {
        let labels = [0u8, 1, 2, 2, 1, 0];
        let palette = mask_palette(3);
        let bytes = mask_png(&labels, 3, 2, &palette).unwrap();
        let mut decoder = png::Decoder::new(std::io::Cursor::new(bytes));
        decoder.set_transformations(png::Transformations::IDENTITY);
        let mut reader = decoder.read_info().unwrap();
        let info = reader.info();
        assert_eq!(info.color_type, png::ColorType::Indexed);
        assert_eq!(&info.palette.as_ref().unwrap()[..9], palette.concat());
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        reader.next_frame(&mut buf).unwrap();
        assert_eq!(buf[..6], labels);
    }

    /// The `.npy` file has NumPy's magic, a header of the dtype and shape, and the values.
    #[test]
    fn npy_has_the_header_and_values() {
        let bytes = npy_f32(&[2, 1, 2], &[1.0, 2.0, 3.0, 4.5]).unwrap();
        assert_eq!(&bytes[..6], b"\x93NUMPY");
        let header = String::from_utf8_lossy(&bytes[10..bytes.len() - 16]);
        assert!(header.contains("'descr': '<f4'"), "{header}");
        assert!(header.contains("'shape': (2, 1, 2,"), "{header}");
        let tail: Vec<f32> = bytes[bytes.len() - 16..]
            .chunks(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect();
        assert_eq!(tail, [1.0, 2.0, 3.0, 4.5]);
    }
}
