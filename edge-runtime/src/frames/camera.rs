//! A V4L2 camera as a frame source (feature `v4l2`; building it needs
//! `libclang-dev` for the v4l crate's bindings). Takes one frame every
//! `interval` in 8-bit grey (GREY), 16-bit grey (Y16) or YUYV (its luma).

use std::path::Path;
use std::time::Duration;

use nemascope_core::imageio::Pixels;
use nemascope_core::Grid;
use v4l::buffer::Type;
use v4l::io::mmap::Stream;
use v4l::io::traits::CaptureStream;
use v4l::video::Capture;
use v4l::{Device, Format, FourCC};

use crate::frames::{Acquired, FrameSource, Next, Pacer};
use crate::journal::now_ms;

/// Buffers the driver fills; all are drained before a frame is used, so
/// the frame counted is the newest, not one queued seconds ago.
const BUFFERS: u32 = 2;

pub struct V4l2Source {
    stream: Stream<'static>,
    format: Format,
    pacer: Pacer,
    sample: String,
    _device: Device,
}

impl V4l2Source {
    pub fn open(
        device: &Path,
        width: u32,
        height: u32,
        interval: Duration,
        sample: &str,
    ) -> Result<Self, String> {
        let what = |e: std::io::Error| format!("{}: {e}", device.display());
        let dev = Device::with_path(device).map_err(what)?;
        let want = Format::new(width, height, FourCC::new(b"GREY"));
        let format = dev.set_format(&want).map_err(what)?;
        let fourcc = format.fourcc;
        if ![*b"GREY", *b"Y16 ", *b"YUYV"].contains(&fourcc.repr) {
            return Err(format!(
                "{}: the camera offers {fourcc} at {}x{}; GREY, Y16 or YUYV is needed",
                device.display(),
                format.width,
                format.height
            ));
        }
        let stream = Stream::with_buffers(&dev, Type::VideoCapture, BUFFERS).map_err(what)?;
        Ok(V4l2Source {
            stream,
            format,
            pacer: Pacer::new(interval),
            sample: sample.into(),
            _device: dev,
        })
    }
}

/// The luma of one captured buffer at its own depth.
fn plane(f: &Format, buf: &[u8]) -> Result<Pixels, String> {
    let (w, h) = (f.width as usize, f.height as usize);
    let stride = f.stride as usize;
    let px = if &f.fourcc.repr == b"GREY" { 1 } else { 2 };
    if buf.len() < stride * h.saturating_sub(1) + w * px {
        return Err(format!("short frame: {} bytes for {w}x{h}", buf.len()));
    }
    let rows = |y: usize| &buf[y * stride..];
    let bad = |e: nemascope_core::Error| e.to_string();
    Ok(match &f.fourcc.repr {
        b"Y16 " => Pixels::Gray16(
            Grid::from_vec(
                w,
                h,
                (0..h)
                    .flat_map(|y| {
                        (0..w)
                            .map(move |x| u16::from_le_bytes([rows(y)[2 * x], rows(y)[2 * x + 1]]))
                    })
                    .collect(),
            )
            .map_err(bad)?,
        ),
        b"GREY" => Pixels::Gray8(
            Grid::from_vec(w, h, (0..h).flat_map(|y| rows(y)[..w].to_vec()).collect())
                .map_err(bad)?,
        ),
        // YUYV: Y every other byte.
        _ => Pixels::Gray8(
            Grid::from_vec(
                w,
                h,
                (0..h)
                    .flat_map(|y| (0..w).map(move |x| rows(y)[2 * x]))
                    .collect(),
            )
            .map_err(bad)?,
        ),
    })
}

impl FrameSource for V4l2Source {
    fn next(&mut self) -> Next {
        if !self.pacer.due() {
            return Next::Idle;
        }
        let source = format!("v4l2-{}", now_ms());
        let mut newest = Err("no frame".to_string());
        for _ in 0..BUFFERS {
            newest = match self.stream.next() {
                Ok((buf, _)) => plane(&self.format, buf),
                Err(e) => Err(e.to_string()),
            };
        }
        match newest {
            Ok(pixels) => Next::Frame(Acquired {
                pixels,
                sample: self.sample.clone(),
                source,
                identity: None,
            }),
            Err(error) => Next::Failed {
                source,
                sample: self.sample.clone(),
                identity: None,
                error,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nemascope_core::imageio::Luma;

    fn format(fourcc: &[u8; 4], stride: u32) -> Format {
        let mut f = Format::new(3, 2, FourCC::new(fourcc));
        f.stride = stride;
        f
    }

    #[test]
    fn buffers_become_luma_planes() {
        // 8-bit grey with a padded row.
        let p = plane(&format(b"GREY", 4), &[0, 255, 51, 9, 102, 0, 255, 9])
            .unwrap()
            .to_plane();
        assert_eq!(p.data(), &[0.0, 1.0, 0.2, 0.4, 0.0, 1.0]);
        // YUYV: the Y bytes only.
        let buf = [255, 1, 0, 2, 51, 3, 0, 4, 255, 5, 0, 6];
        let p = plane(&format(b"YUYV", 6), &buf).unwrap().to_plane();
        assert_eq!(p.data(), &[1.0, 0.0, 0.2, 0.0, 1.0, 0.0]);
        // 16-bit grey.
        let buf: Vec<u8> = [0u16, 65535, 0, 65535, 0, 65535]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let p = plane(&format(b"Y16 ", 6), &buf).unwrap().to_plane();
        assert_eq!(p.data(), &[0.0, 1.0, 0.0, 1.0, 0.0, 1.0]);
        // A short buffer is an error, not a panic.
        let e = plane(&format(b"GREY", 4), &[0; 5]).unwrap_err();
        assert!(e.contains("short frame"), "{e}");
    }
}
