//! A 12000×12000 PNG of about 140 KB (a decompression bomb): refused from its header, before
//! any pixel is allocated. The child's peak memory is its own address space's high-water mark
//! (`VmHWM`), read until it exits: `wait4`'s `ru_maxrss` would also count the test process's,
//! which the child ran on until its `exec` (`posix_spawn`), and the suite's process is large.

use std::io::Write;
use std::path::Path;

use crate::common::{config, runs_set, vitrun};

/// Writes a valid grey PNG of `side`×`side` zero pixels, streaming the compressed rows.
fn bomb(path: &Path, side: u32) {
    let mut idat = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    let row = vec![0u8; side as usize + 1];
    for _ in 0..side {
        idat.write_all(&row).unwrap();
    }
    let idat = idat.finish().unwrap();
    let chunk = |out: &mut Vec<u8>, kind: &[u8], data: &[u8]| {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let mut crc = flate2::Crc::new();
        crc.update(kind);
        crc.update(data);
        out.extend_from_slice(kind);
        out.extend_from_slice(data);
        out.extend_from_slice(&crc.sum().to_be_bytes());
    };
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&side.to_be_bytes());
    ihdr.extend_from_slice(&side.to_be_bytes());
    ihdr.extend_from_slice(&[8, 0, 0, 0, 0]);
    chunk(&mut png, b"IHDR", &ihdr);
    chunk(&mut png, b"IDAT", &idat);
    chunk(&mut png, b"IEND", &[]);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, png).unwrap();
}

/// The peak resident memory of process `pid`'s address space so far, in KiB (`VmHWM`).
fn high_water_kib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Runs the command to its end; returns its exit code, output and peak RSS in MiB (sampled
/// every 2 ms: the high-water mark only grows, so the last sample before exit is the peak of
/// all but its last 2 ms).
fn run_measured(mut cmd: std::process::Command) -> (Option<i32>, String, f64) {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("out.txt");
    let file = std::fs::File::create(&log).unwrap();
    let mut child = cmd
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .spawn()
        .unwrap();
    let mut peak = 0f64;
    let status = loop {
        if let Some(kib) = high_water_kib(child.id()) {
            peak = peak.max(kib);
        }
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    };
    let out = std::fs::read_to_string(&log).unwrap();
    (status.code(), out, peak / 1024.0)
}

#[test]
fn a_decompression_bomb_is_refused_from_its_header_in_bounded_memory() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    for split in ["train", "val"] {
        for class in ["a", "b"] {
            for i in 0..3 {
                let p = data.join(format!("{split}/{class}/{i}.png"));
                std::fs::create_dir_all(p.parent().unwrap()).unwrap();
                image::RgbImage::from_pixel(8, 8, image::Rgb([i * 60, 20, 200]))
                    .save(&p)
                    .unwrap();
            }
        }
    }
    let bomb_path = data.join("train/a/bomb.png");
    bomb(&bomb_path, 12_000);
    let size = std::fs::metadata(&bomb_path).unwrap().len();
    assert!(size < 400_000, "the bomb is small on disk: {size} bytes");

    let file = config("micro.toml");
    let path = format!("data.path={:?}", data.display().to_string());
    let set = runs_set(&tmp.path().join("runs"));
    let args = |skip: &str| {
        let mut cmd = vitrun(&[
            "run",
            file.to_str().unwrap(),
            "--quiet",
            "--set",
            &set,
            "--set",
            "data.dataset=\"image_folder\"",
            "--set",
            &path,
            "--set",
            "data.classes=[\"a\", \"b\"]",
            "--set",
            "train.epochs=1",
            "--set",
            "data.workers=2",
            "--set",
            skip,
        ]);
        cmd.env_remove("RUST_BACKTRACE");
        cmd
    };
    let (code, out, peak) = run_measured(args("data.skip_bad=false"));
    println!("bomb refused: exit {code:?}, peak RSS {peak:.0} MiB");
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("bomb.png")
            && out.contains("12000x12000")
            && out.contains("data.max_image_pixels"),
        "{out}"
    );
    let (code, out, skipped_peak) = run_measured(args("data.skip_bad=true"));
    println!("bomb skipped: exit {code:?}, peak RSS {skipped_peak:.0} MiB");
    assert_eq!(code, Some(0), "{out}");
    // Decoding it would take 144 MB per copy (432 MB as RGB); refusing it costs nothing.
    for p in [peak, skipped_peak] {
        assert!(p < 200.0, "peak RSS {p:.0} MiB");
    }
}
