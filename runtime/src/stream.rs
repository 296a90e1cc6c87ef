//! Images arriving one after another on a byte stream — a camera's MJPEG (`libcamera-vid --codec
//! mjpeg -o -`), ffmpeg's `image2pipe`, `cat a.png b.png` — split into one encoded image each, as
//! they arrive, by the structure of their own format: JPEG segments (with the entropy-coded data
//! scanned for the next marker) and PNG chunks. Nothing waits for the stream to end, so `fer-run
//! -` answers frame by frame. A stream that starts with another format the build decodes (WebP,
//! GIF, BMP, TIFF) is read to its end as one image. [`MjpegWriter`] writes such a stream.

use crate::error::{FerError, Result};
use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Pictures written one after another as JPEGs into one file, as a camera writes MJPEG: ffplay
/// (`ffplay -f mjpeg FILE`), VLC, OpenCV's `VideoCapture` and [`FrameStream`] read it back.
/// `fer-run -` writes a stream's annotated frames (and CAM frames) this way: a camera's frames
/// as PNGs, one file each, would fill a card within hours and take longer to encode. A recording
/// ([`MjpegWriter::record`]) can go on into new files as it grows and drop its oldest
/// ([`Rotation`]), so a camera left running does not fill the disk either.
pub struct MjpegWriter {
    /// Where the next frame goes.
    path: PathBuf,
    /// The open file at `path`; `None` after a file filled up, until the next frame opens the next.
    out: Option<std::fs::File>,
    frames: usize,
    /// Bytes written into the file at `path`.
    file_bytes: u64,
    /// When the file at `path` got its first frame; `None` before.
    file_started: Option<Instant>,
    /// How a recording's files are named, for the next one; `None` for [`MjpegWriter::create`].
    naming: Option<Naming>,
    rotation: Option<Rotation>,
    /// The files of this recording still on disk, oldest first; the last is `path` once open.
    files: VecDeque<PathBuf>,
    removed: usize,
}

/// When a recording ([`MjpegWriter::record`]) goes on into its next file ([`Split`]), keeping
/// only the newest `keep` files of the recording on disk (the oldest removed as the next one
/// starts; all are kept when `None`). A recording into a FIFO (a player watching live) is never
/// split.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rotation {
    pub split: Split,
    pub keep: Option<usize>,
}

/// When a recording's current file is done.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Split {
    /// Once it holds this many bytes or more: the frame that crosses the limit is its last.
    Bytes(u64),
    /// Once this long has passed since its first frame, by the clock as frames are written: the
    /// frame written at or after that is its last (as with a size, where the next frame goes is
    /// known before it comes: a stream's JSON names each frame's file).
    Every(Duration),
}

/// A recording's file names: `dir/stem.ext`, `dir/stem_1.ext`, `dir/stem_2.ext`, ...; `number`
/// is the current file's (0 for the first name).
struct Naming {
    dir: PathBuf,
    stem: String,
    ext: String,
    number: usize,
}

impl Naming {
    /// The first name from number `from` on that no regular file has, and its number. An earlier
    /// recording, which no input could make again, is never overwritten; a FIFO is written to.
    fn free(&self, from: usize) -> (PathBuf, usize) {
        let taken = |p: &Path| std::fs::metadata(p).is_ok_and(|m| m.is_file());
        (from..)
            .map(|k| match k {
                0 => (self.dir.join(format!("{}.{}", self.stem, self.ext)), k),
                k => (self.dir.join(format!("{}_{k}.{}", self.stem, self.ext)), k),
            })
            .find(|(p, _)| !taken(p))
            .expect("a free number below usize::MAX")
    }
}

/// JPEG quality of [`MjpegWriter`] frames: boxes and tags stay sharp, and a 640x480 frame is
/// tens of kilobytes.
pub const MJPEG_QUALITY: u8 = 85;

/// `frame` as a JPEG of [`MJPEG_QUALITY`], as [`MjpegWriter`] writes each frame: colour kept at
/// full resolution (4:4:4, as `image`'s encoder wrote it: a box's edge and a tag's letters are
/// thin and coloured).
pub fn encode_jpeg(frame: &image::RgbImage) -> Result<Vec<u8>> {
    let failed = |reason: String| image::ImageError::Encoding(image::error::EncodingError::new(image::ImageFormat::Jpeg.into(), reason));
    let (Ok(width), Ok(height)) = (u16::try_from(frame.width()), u16::try_from(frame.height())) else {
        return Err(failed(format!("a JPEG is at most 65535 pixels a side, this frame is {}x{}", frame.width(), frame.height())).into());
    };
    let mut jpeg = Vec::with_capacity(frame.as_raw().len() / 8);
    let mut encoder = jpeg_encoder::Encoder::new(&mut jpeg, MJPEG_QUALITY);
    encoder.set_sampling_factor(jpeg_encoder::SamplingFactor::R_4_4_4);
    encoder.encode(frame.as_raw(), width, height, jpeg_encoder::ColorType::Rgb).map_err(|e| failed(e.to_string()))?;
    Ok(jpeg)
}

impl MjpegWriter {
    /// Creates (or truncates) the file at `path`, and its folder; every frame goes into it.
    pub fn create(path: &Path) -> Result<MjpegWriter> {
        MjpegWriter::open(path.to_path_buf(), None, None)
    }

    /// Starts a recording in `dir` (made if missing) named after `name` (`stdin_annotated.mjpeg`):
    /// in `name`, or the first free `stdin_annotated_1.mjpeg`, `_2`, ... when an earlier
    /// recording is there (it is kept; a FIFO there is written to, which is how a player watches
    /// live). With `rotation`, later files take the next free numbers after the current one.
    pub fn record(dir: &Path, name: &str, rotation: Option<Rotation>) -> Result<MjpegWriter> {
        let (stem, ext) = name.rsplit_once('.').unwrap_or((name, "mjpeg"));
        let mut naming = Naming {
            dir: dir.to_path_buf(),
            stem: stem.to_string(),
            ext: ext.to_string(),
            number: 0,
        };
        let (path, number) = naming.free(0);
        naming.number = number;
        let mut writer = MjpegWriter::open(path, Some(naming), rotation)?;
        // Only a regular file fills a disk; a FIFO's reader takes the frames away as they come.
        if !std::fs::metadata(&writer.path).is_ok_and(|m| m.is_file()) {
            writer.rotation = None;
        }
        Ok(writer)
    }

    fn open(path: PathBuf, naming: Option<Naming>, rotation: Option<Rotation>) -> Result<MjpegWriter> {
        let mut writer = MjpegWriter {
            path,
            out: None,
            frames: 0,
            file_bytes: 0,
            file_started: None,
            naming,
            rotation,
            files: VecDeque::new(),
            removed: 0,
        };
        writer.open_file()?;
        Ok(writer)
    }

    /// Opens the file at `path` (and its folder) for the next frames. A recording's file is made
    /// new: should another recording have made a file of that name since it was picked, the next
    /// free name is taken instead of truncating it. A FIFO (a player watching) is opened as is.
    fn open_file(&mut self) -> Result<()> {
        use std::io::ErrorKind::AlreadyExists;
        crate::error::create_parent(&self.path)?;
        let out = loop {
            let special = std::fs::metadata(&self.path).is_ok_and(|m| !m.is_file() && !m.is_dir());
            let opened = match &self.naming {
                Some(_) if !special => std::fs::OpenOptions::new().write(true).create_new(true).open(&self.path),
                _ => std::fs::File::create(&self.path),
            };
            match (opened, &mut self.naming) {
                (Err(e), Some(naming)) if e.kind() == AlreadyExists => {
                    (self.path, naming.number) = naming.free(naming.number);
                }
                (opened, _) => break opened.map_err(|e| FerError::io(&self.path, e))?,
            }
        };
        self.out = Some(out);
        self.file_bytes = 0;
        self.file_started = None;
        self.files.push_back(self.path.clone());
        Ok(())
    }

    /// Removes the recording's oldest files beyond [`Rotation::keep`]. A file that cannot be
    /// removed is named in the error and not tried again.
    fn remove_oldest(&mut self) -> Result<()> {
        let keep = self.rotation.and_then(|r| r.keep).unwrap_or(usize::MAX).max(1);
        while self.files.len() > keep {
            let old = self.files.pop_front().expect("more files than kept");
            match std::fs::remove_file(&old) {
                // Gone already (removed by hand): what keeping the newest asks for.
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    let why = format!("removing the recording's oldest file (only the newest {keep} are kept): {e}");
                    return Err(FerError::io(&old, std::io::Error::new(e.kind(), why)));
                }
                _ => self.removed += 1,
            }
        }
        Ok(())
    }

    /// Appends `frame` as one JPEG in one write: what was written survives a kill, and a player
    /// reading the file (or a FIFO) sees the frame at once. A recording goes on into its next
    /// file as its [`Rotation::split`] says. An old file that cannot be removed makes an error
    /// after the frame is written.
    pub fn push(&mut self, frame: &image::RgbImage) -> Result<()> {
        self.push_at(frame, Instant::now())
    }

    /// [`MjpegWriter::push`] of a frame written at `now`.
    fn push_at(&mut self, frame: &image::RgbImage, now: Instant) -> Result<()> {
        use std::io::Write;
        let jpeg = encode_jpeg(frame)?;
        let mut removed = Ok(());
        if self.out.is_none() {
            self.open_file()?;
            removed = self.remove_oldest();
        }
        let out = self.out.as_mut().expect("opened above");
        out.write_all(&jpeg).map_err(|e| FerError::io(&self.path, e))?;
        self.frames += 1;
        self.file_bytes += jpeg.len() as u64;
        let started = *self.file_started.get_or_insert(now);
        let full = match self.rotation.map(|r| r.split) {
            Some(Split::Bytes(max_bytes)) => self.file_bytes >= max_bytes,
            Some(Split::Every(every)) => now.saturating_duration_since(started) >= every,
            None => false,
        };
        if full {
            self.next_file();
        }
        removed
    }

    /// Names the recording's next file, so `path` says where the next frame goes; it is made
    /// when that frame comes, so a recording ends with no empty file.
    fn next_file(&mut self) {
        if let (Some(_), Some(naming)) = (self.rotation, &mut self.naming) {
            let (next, number) = naming.free(naming.number + 1);
            naming.number = number;
            self.path = next;
            self.out = None;
        }
    }

    /// Frames written so far, in all files.
    pub fn frames(&self) -> usize {
        self.frames
    }

    /// Where the next frame goes.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The files written so far that are still on disk, oldest first.
    pub fn files(&self) -> impl ExactSizeIterator<Item = &Path> {
        self.files.iter().map(|p| p.as_path())
    }

    /// Files of this recording removed to keep [`Rotation::keep`].
    pub fn removed(&self) -> usize {
        self.removed
    }
}

/// Largest encoded frame accepted (a 100-megapixel JPEG is ~50 MB): a stream that never reaches
/// the end of its frame fails here instead of filling the memory.
pub const MAX_FRAME_BYTES: usize = 256 << 20;

/// One encoded image of a stream and the name it goes by in output and errors (`<stream>:<i>`,
/// counted from 0).
#[derive(Debug, Clone)]
pub struct Frame {
    pub name: String,
    pub bytes: Vec<u8>,
}

/// Iterator over the frames of a byte stream. An error (a frame cut off, bytes that are no image)
/// is yielded once and ends the iteration: past a broken frame there is no reliable place to
/// start again.
///
/// ```no_run
/// use fer_runtime::{decode_image, stream::FrameStream, ImageLimits};
/// for frame in FrameStream::new(std::io::stdin(), "stdin") {
///     let frame = frame?;
///     let img = decode_image(&frame.bytes, frame.name.as_ref(), &ImageLimits::default())?;
///     println!("{}: {}x{}", frame.name, img.width(), img.height());
/// }
/// # Ok::<(), fer_runtime::FerError>(())
/// ```
pub struct FrameStream<R> {
    reader: BufReader<R>,
    name: String,
    next_index: usize,
    done: bool,
    max_bytes: usize,
}

impl<R: Read> FrameStream<R> {
    /// Frames of `reader`; `name` ("stdin") prefixes their names.
    pub fn new(reader: R, name: impl Into<String>) -> Self {
        FrameStream {
            reader: BufReader::with_capacity(1 << 16, reader),
            name: name.into(),
            next_index: 0,
            done: false,
            max_bytes: MAX_FRAME_BYTES,
        }
    }

    /// Lowers the size cap ([`MAX_FRAME_BYTES`]), for tests and small devices.
    pub fn with_max_bytes(mut self, max_bytes: usize) -> Self {
        self.max_bytes = max_bytes;
        self
    }
}

impl<R: Read> Iterator for FrameStream<R> {
    type Item = Result<Frame>;

    fn next(&mut self) -> Option<Result<Frame>> {
        if self.done {
            return None;
        }
        let name = format!("{}:{}", self.name, self.next_index);
        self.next_index += 1;
        let mut taker = Taker {
            reader: &mut self.reader,
            bytes: Vec::new(),
            max: self.max_bytes,
        };
        match taker.frame() {
            Ok(true) => Some(Ok(Frame {
                name,
                bytes: taker.bytes,
            })),
            Ok(false) => {
                self.done = true;
                None
            }
            Err(why) => {
                self.done = true;
                let reason = match why {
                    Why::Io(e) => format!("reading the stream: {e}"),
                    Why::Cut => format!(
                        "the stream ended inside this frame (after {} bytes)",
                        taker.bytes.len()
                    ),
                    Why::TooLarge => format!(
                        "no end of the frame in its first {} MiB",
                        self.max_bytes >> 20
                    ),
                    Why::Bad(what) => what,
                };
                Some(Err(FerError::Stream { name, reason }))
            }
        }
    }
}

enum Why {
    Io(std::io::Error),
    /// End of stream inside a frame.
    Cut,
    TooLarge,
    Bad(String),
}

/// Reads one frame's bytes into `bytes`.
struct Taker<'a, R> {
    reader: &'a mut BufReader<R>,
    bytes: Vec<u8>,
    max: usize,
}

impl<R: Read> Taker<'_, R> {
    /// One frame into `self.bytes`: `Ok(false)` at a clean end of the stream (no byte left).
    fn frame(&mut self) -> std::result::Result<bool, Why> {
        if self.reader.fill_buf().map_err(Why::Io)?.is_empty() {
            return Ok(false);
        }
        match (self.byte()?, self.byte()?) {
            (0xFF, 0xD8) => self.jpeg()?,
            (0x89, b'P') => self.png()?,
            _ => self.whole_stream()?,
        }
        Ok(true)
    }

    fn byte(&mut self) -> std::result::Result<u8, Why> {
        let mut b = [0u8];
        match self.reader.read_exact(&mut b) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Err(Why::Cut),
            Err(e) => return Err(Why::Io(e)),
        }
        self.keep(&b)?;
        Ok(b[0])
    }

    fn keep(&mut self, b: &[u8]) -> std::result::Result<(), Why> {
        if self.bytes.len() + b.len() > self.max {
            return Err(Why::TooLarge);
        }
        self.bytes.extend_from_slice(b);
        Ok(())
    }

    /// The next `n` bytes, kept.
    fn skip(&mut self, n: usize) -> std::result::Result<(), Why> {
        if self.bytes.len() + n > self.max {
            return Err(Why::TooLarge);
        }
        let got = (&mut *self.reader)
            .take(n as u64)
            .read_to_end(&mut self.bytes)
            .map_err(Why::Io)?;
        if got < n {
            return Err(Why::Cut);
        }
        Ok(())
    }

    /// JPEG after its SOI (FF D8): segments by their lengths up to EOI (FF D9). A scan's
    /// entropy-coded data has no length: it runs to the next marker, an FF not followed by 00
    /// (a stuffed FF) or D0–D7 (restart markers, which stay inside the scan). APPn segments — EXIF
    /// with its thumbnail, whose own FF D9 must not end the frame — are skipped by their lengths.
    fn jpeg(&mut self) -> std::result::Result<(), Why> {
        let mut found: Option<u8> = None;
        loop {
            let marker = match found.take() {
                Some(m) => m,
                None => {
                    let b = self.byte()?;
                    if b != 0xFF {
                        return Err(Why::Bad(format!(
                            "JPEG: a marker was due at byte {}, found 0x{b:02X}",
                            self.bytes.len() - 1
                        )));
                    }
                    self.marker()?
                }
            };
            match marker {
                0xD9 => return Ok(()),
                0xD0..=0xD7 | 0x01 => {}
                _ => {
                    let len = u16::from_be_bytes([self.byte()?, self.byte()?]) as usize;
                    if len < 2 {
                        return Err(Why::Bad(format!(
                            "JPEG: segment FF{marker:02X} at byte {} has length {len}",
                            self.bytes.len() - 4
                        )));
                    }
                    self.skip(len - 2)?;
                    if marker == 0xDA {
                        found = Some(self.entropy_coded()?);
                    }
                }
            }
        }
    }

    /// The marker byte after an FF, past fill bytes (more FFs).
    fn marker(&mut self) -> std::result::Result<u8, Why> {
        let mut m = self.byte()?;
        while m == 0xFF {
            m = self.byte()?;
        }
        Ok(m)
    }

    /// A scan's data, up to and including the marker that ends it; returns that marker.
    fn entropy_coded(&mut self) -> std::result::Result<u8, Why> {
        loop {
            // Whole buffered runs up to the next FF at a time: the data is most of a JPEG's bytes.
            let buf = self.reader.fill_buf().map_err(Why::Io)?;
            if buf.is_empty() {
                return Err(Why::Cut);
            }
            let ff = buf.iter().position(|&b| b == 0xFF);
            let run = ff.unwrap_or(buf.len());
            if self.bytes.len() + run > self.max {
                return Err(Why::TooLarge);
            }
            self.bytes.extend_from_slice(&buf[..run]);
            self.reader.consume(run);
            if ff.is_none() {
                continue;
            }
            self.byte()?; // the FF
            match self.marker()? {
                0x00 | 0xD0..=0xD7 => {}
                m => return Ok(m),
            }
        }
    }

    /// PNG after its first two bytes: the rest of the signature, then chunks (length, type, data,
    /// CRC) up to IEND.
    fn png(&mut self) -> std::result::Result<(), Why> {
        for &want in b"NG\r\n\x1a\n" {
            if self.byte()? != want {
                return Err(Why::Bad("starts like a PNG but its signature is broken".into()));
            }
        }
        loop {
            let len = u32::from_be_bytes([self.byte()?, self.byte()?, self.byte()?, self.byte()?]);
            if len > i32::MAX as u32 {
                return Err(Why::Bad(format!("PNG: chunk length {len} at byte {}", self.bytes.len() - 4)));
            }
            let kind = [self.byte()?, self.byte()?, self.byte()?, self.byte()?];
            self.skip(len as usize + 4)?;
            if &kind == b"IEND" {
                return Ok(());
            }
        }
    }

    /// Another format the build decodes, whose end cannot be found from outside: the rest of the
    /// stream is the image. Anything else is refused with what was expected.
    fn whole_stream(&mut self) -> std::result::Result<(), Why> {
        // Enough of the start to recognise the format (WebP's signature is 12 bytes).
        while self.bytes.len() < 16 {
            match self.byte() {
                Ok(_) => {}
                Err(Why::Cut) => break,
                Err(e) => return Err(e),
            }
        }
        let known = image::guess_format(&self.bytes).is_ok_and(|f| f.reading_enabled());
        if !known {
            let start: Vec<String> = self.bytes.iter().take(8).map(|b| format!("{b:02X}")).collect();
            return Err(Why::Bad(format!(
                "not an image (starts with {}): a stream takes JPEG (MJPEG) or PNG frames one \
                 after another, or one image in any readable format ({})",
                start.join(" "),
                crate::inputs::image_formats()
            )));
        }
        let max = self.max - self.bytes.len();
        let got = (&mut *self.reader)
            .take(max as u64 + 1)
            .read_to_end(&mut self.bytes)
            .map_err(Why::Io)?;
        if got > max {
            return Err(Why::TooLarge);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{ImageFormat, Rgb, RgbImage};
    use std::io::Cursor;

    fn picture(w: u32, h: u32, seed: u32) -> RgbImage {
        // Busy content, so that the JPEG's entropy-coded data holds stuffed FF 00 bytes.
        RgbImage::from_fn(w, h, |x, y| {
            let v = (x * 37 + y * 91 + seed * 53) ^ (x * y + seed);
            Rgb([(v % 251) as u8, (v / 3 % 256) as u8, (v * 7 % 253) as u8])
        })
    }

    fn encode(img: &RgbImage, format: ImageFormat) -> Vec<u8> {
        let mut out = Cursor::new(Vec::new());
        img.write_to(&mut out, format).unwrap();
        out.into_inner()
    }

    fn frames(bytes: &[u8]) -> Vec<Result<Frame>> {
        FrameStream::new(Cursor::new(bytes.to_vec()), "s").collect()
    }

    #[test]
    fn splits_jpeg_and_png_frames_back_to_back() {
        let parts = [
            encode(&picture(64, 48, 1), ImageFormat::Jpeg),
            encode(&picture(30, 20, 2), ImageFormat::Png),
            encode(&picture(97, 33, 3), ImageFormat::Jpeg),
            encode(&picture(16, 16, 4), ImageFormat::Png),
        ];
        assert!(
            parts[0].windows(2).any(|w| w == [0xFF, 0x00]),
            "the test JPEG should hold stuffed bytes"
        );
        let got = frames(&parts.concat());
        assert_eq!(got.len(), 4);
        for (i, (f, want)) in got.into_iter().zip(&parts).enumerate() {
            let f = f.unwrap();
            assert_eq!(f.name, format!("s:{i}"));
            assert!(f.bytes == *want, "frame {i}: {} bytes, want {}", f.bytes.len(), want.len());
        }
        assert!(frames(&[]).is_empty(), "an empty stream has no frames and no error");
    }

    /// A JPEG with an APP1 segment holding a whole JPEG (as EXIF thumbnails do), restart markers
    /// in the scan and two scans (as progressive JPEGs have): the frame ends at the outer EOI.
    #[test]
    fn jpeg_structure_not_byte_patterns_ends_a_frame() {
        let thumb = encode(&picture(8, 8, 5), ImageFormat::Jpeg);
        let mut jpeg = vec![0xFF, 0xD8];
        jpeg.extend([0xFF, 0xE1]);
        jpeg.extend(((thumb.len() + 2) as u16).to_be_bytes());
        jpeg.extend(&thumb);
        let scan = |data: &[u8]| {
            let mut s = vec![0xFF, 0xDA, 0x00, 0x04, 0x01, 0x02];
            s.extend(data);
            s
        };
        jpeg.extend(scan(&[0x12, 0xFF, 0x00, 0x34, 0xFF, 0xD0, 0x56, 0xFF, 0xFF, 0xD1, 0x78]));
        jpeg.extend([0xFF, 0xC4, 0x00, 0x03, 0x99]); // a table between the scans
        jpeg.extend(scan(&[0xAB; 5000]));
        jpeg.extend([0xFF, 0xFF, 0xD9]); // the EOI after a fill byte
        let png = encode(&picture(5, 5, 6), ImageFormat::Png);
        let got = frames(&[jpeg.clone(), png.clone(), jpeg.clone()].concat());
        let got: Vec<Vec<u8>> = got.into_iter().map(|f| f.unwrap().bytes).collect();
        assert_eq!(got, vec![jpeg.clone(), png, jpeg]);
        // Read through a one-byte buffer the same way (runs of data cut at every byte).
        let slow = FrameStream {
            reader: BufReader::with_capacity(1, Cursor::new(thumb.clone())),
            name: "s".into(),
            next_index: 0,
            done: false,
            max_bytes: MAX_FRAME_BYTES,
        };
        let got: Vec<Vec<u8>> = slow.map(|f| f.unwrap().bytes).collect();
        assert_eq!(got, vec![thumb]);
    }

    #[test]
    fn other_formats_are_the_whole_stream() {
        let gif = encode(&picture(20, 10, 7), ImageFormat::Gif);
        let got = frames(&gif);
        assert_eq!(got.len(), 1);
        assert!(got[0].as_ref().unwrap().bytes == gif);
    }

    /// Streams of good frames with random bytes changed, inserted or cut: the splitter and the
    /// decoder never panic, and every stream ends (an error ends it at the frame it is in).
    #[test]
    fn damaged_streams_never_panic() {
        let good = [
            encode(&picture(24, 20, 10), ImageFormat::Jpeg),
            encode(&picture(12, 9, 11), ImageFormat::Png),
            encode(&picture(17, 13, 12), ImageFormat::Jpeg),
        ]
        .concat();
        let mut rng = crate::test_rng::lcg(7);
        let mut next = |n: usize| (rng.next().unwrap() >> 33) as usize % n.max(1);
        let limits = crate::ImageLimits::default();
        for case in 0..1500 {
            let mut bytes = good.clone();
            for _ in 0..1 + next(4) {
                let at = next(bytes.len());
                match next(4) {
                    0 => bytes[at] = next(256) as u8,
                    1 => bytes[at] = 0xFF,
                    2 => bytes.insert(at, next(256) as u8),
                    _ => bytes.truncate(at),
                }
            }
            let mut frames = 0;
            for frame in FrameStream::new(Cursor::new(bytes.clone()), "s") {
                frames += 1;
                assert!(frames <= bytes.len(), "case {case}: the stream does not end");
                if let Ok(f) = frame {
                    let _ = crate::decode_image(&f.bytes, "s".as_ref(), &limits);
                }
            }
        }
    }

    #[test]
    fn broken_streams_are_named_errors_that_end_the_stream() {
        let jpeg = encode(&picture(40, 30, 8), ImageFormat::Jpeg);
        let png = encode(&picture(40, 30, 9), ImageFormat::Png);
        let message = |r: &Result<Frame>| r.as_ref().unwrap_err().to_string();

        // Cut off inside the second frame: the first still comes out whole.
        let cut = [&jpeg[..], &png[..png.len() - 5]].concat();
        let got = frames(&cut);
        assert_eq!(got.len(), 2);
        assert!(got[0].as_ref().unwrap().bytes == jpeg);
        let m = message(&got[1]);
        assert!(m.starts_with("s:1: the stream ended inside this frame"), "{m}");

        // Text after a good frame.
        let got = frames(&[&png[..], b"hello, this is not an image"].concat());
        assert_eq!(got.len(), 2);
        let m = message(&got[1]);
        assert!(m.starts_with("s:1: not an image (starts with 68 65 6C 6C"), "{m}");
        assert!(m.contains("JPEG (MJPEG) or PNG"), "{m}");

        // A JPEG with garbage where a marker belongs, and one whose segment length is 0.
        let got = frames(&[0xFF, 0xD8, 0x42, 0x00]);
        let m = message(&got[0]);
        assert!(m.contains("a marker was due at byte 2, found 0x42"), "{m}");
        let got = frames(&[0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x00]);
        assert!(message(&got[0]).contains("has length 0"));
        let got = frames(b"\x89PNX....");
        assert!(message(&got[0]).contains("signature is broken"));

        // Over the size cap.
        let got: Vec<_> = FrameStream::new(Cursor::new(jpeg.clone()), "s")
            .with_max_bytes(jpeg.len() - 1)
            .collect();
        assert!(message(&got[0]).contains("no end of the frame"), "{}", message(&got[0]));
        let got: Vec<_> = FrameStream::new(Cursor::new(jpeg.clone()), "s")
            .with_max_bytes(jpeg.len())
            .collect();
        assert!(got[0].as_ref().unwrap().bytes == jpeg);
    }

    /// A frame's thin coloured lines (a box's edge, a tag's letters) keep their colour: its
    /// JPEG keeps colour at full resolution, where 4:2:0 would average a 2-pixel red line's colour
    /// with the white beside it (220,20,20 came back 116,63,69). A frame past JPEG's 65535 pixels
    /// a side is an error.
    #[test]
    fn a_frames_jpeg_keeps_thin_coloured_lines() {
        let mut frame = RgbImage::from_pixel(64, 48, Rgb([255, 255, 255]));
        for y in 0..48 {
            for x in 21..23 {
                frame.put_pixel(x, y, Rgb([220, 20, 20]));
            }
        }
        let back = image::load_from_memory_with_format(&encode_jpeg(&frame).unwrap(), ImageFormat::Jpeg).unwrap().to_rgb8();
        assert_eq!(back.dimensions(), (64, 48));
        for y in [0, 20, 47] {
            for x in 21..23 {
                let Rgb([r, g, b]) = *back.get_pixel(x, y);
                assert!(r > 190 && g < 70 && b < 70, "line pixel {x},{y} came back as {r},{g},{b}, not red");
            }
            let Rgb([r, g, b]) = *back.get_pixel(10, y);
            assert!(r > 240 && g > 240 && b > 240, "white pixel 10,{y} came back as {r},{g},{b}");
        }
        let err = encode_jpeg(&RgbImage::new(65536, 1)).unwrap_err().to_string();
        assert!(err.contains("65535") && err.contains("65536x1"), "{err}");
    }

    /// A recording split by size: each file ends with the frame that reaches the limit, the next
    /// files take the next free numbers (an earlier recording's files are skipped, never
    /// overwritten), `keep` removes only this recording's oldest files, and no empty file is left.
    #[test]
    fn a_recording_goes_on_into_numbered_files_and_keeps_the_newest() {
        let dir = std::env::temp_dir().join(format!("fer-mjpeg-rotation-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        // An earlier recording holds the first name and number 2.
        std::fs::write(dir.join("v.mjpeg"), b"earlier").unwrap();
        std::fs::write(dir.join("v_2.mjpeg"), b"earlier 2").unwrap();
        let shots: Vec<RgbImage> = (0..7).map(|i| picture(40, 30, i)).collect();
        let jpeg_len = |img: &RgbImage| {
            encode_jpeg(img).unwrap().len() as u64
        };
        // Two frames fill a file: the limit is over one frame and at most two.
        let max_bytes = shots.iter().map(jpeg_len).max().unwrap() + 1;
        assert!(shots.iter().map(jpeg_len).min().unwrap() * 2 >= max_bytes);
        let rotation = Rotation { split: Split::Bytes(max_bytes), keep: Some(2) };
        let mut video = MjpegWriter::record(&dir, "v.mjpeg", Some(rotation)).unwrap();
        let mut went_to = Vec::new();
        for shot in &shots {
            went_to.push(video.path().file_name().unwrap().to_string_lossy().to_string());
            video.push(shot).unwrap();
        }
        assert_eq!(went_to, ["v_1.mjpeg", "v_1.mjpeg", "v_3.mjpeg", "v_3.mjpeg", "v_4.mjpeg", "v_4.mjpeg", "v_5.mjpeg"]);
        assert_eq!(video.frames(), 7);
        let kept: Vec<_> = video.files().map(|p| p.file_name().unwrap().to_string_lossy().to_string()).collect();
        assert_eq!(kept, ["v_4.mjpeg", "v_5.mjpeg"]);
        assert_eq!(video.removed(), 2);
        drop(video);
        let mut on_disk: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .collect();
        on_disk.sort();
        assert_eq!(on_disk, ["v.mjpeg", "v_2.mjpeg", "v_4.mjpeg", "v_5.mjpeg"], "the earlier recording is untouched");
        assert_eq!(std::fs::read(dir.join("v_2.mjpeg")).unwrap(), b"earlier 2");
        // The kept files hold their frames, whole.
        let read = |name: &str| -> Vec<Vec<u8>> {
            frames(&std::fs::read(dir.join(name)).unwrap()).into_iter().map(|f| f.unwrap().bytes).collect()
        };
        assert_eq!(read("v_4.mjpeg").len(), 2);
        let last = read("v_5.mjpeg");
        assert_eq!(last.len(), 1);
        assert_eq!(image::load_from_memory(&last[0]).unwrap().width(), 40);

        // Without `keep`, every file stays; the last frame reaching the limit leaves no empty file.
        let mut video = MjpegWriter::record(&dir, "w.mjpeg", Some(Rotation { split: Split::Bytes(max_bytes), keep: None })).unwrap();
        for shot in &shots[..4] {
            video.push(shot).unwrap();
        }
        assert_eq!(video.files().count(), 2);
        assert_eq!(video.path(), dir.join("w_2.mjpeg"), "where a fifth frame would go");
        assert!(!dir.join("w_2.mjpeg").exists(), "made only when a frame comes");
        assert_eq!(read("w.mjpeg").len() + read("w_1.mjpeg").len(), 4);
        // Another recording takes that name first: its file is kept, the frame goes on to w_3.
        std::fs::write(dir.join("w_2.mjpeg"), b"another camera's").unwrap();
        video.push(&shots[4]).unwrap();
        assert_eq!(std::fs::read(dir.join("w_2.mjpeg")).unwrap(), b"another camera's");
        assert_eq!((video.path(), read("w_3.mjpeg").len()), (dir.join("w_3.mjpeg").as_path(), 1));

        // An old file removed by hand is no error; one that cannot be removed (here a folder took
        // its place) is an error naming it, and the frame is written all the same.
        let mut video = MjpegWriter::record(&dir, "x.mjpeg", Some(Rotation { split: Split::Bytes(1), keep: Some(1) })).unwrap();
        video.push(&shots[0]).unwrap();
        std::fs::remove_file(dir.join("x.mjpeg")).unwrap();
        video.push(&shots[1]).unwrap();
        assert_eq!(video.removed(), 1);
        std::fs::remove_file(dir.join("x_1.mjpeg")).unwrap();
        std::fs::create_dir(dir.join("x_1.mjpeg")).unwrap();
        let err = video.push(&shots[2]).unwrap_err().to_string();
        assert!(err.contains("x_1.mjpeg") && err.contains("oldest file"), "{err}");
        assert_eq!(read("x_2.mjpeg").len(), 1, "the frame went into the new file all the same");
        assert_eq!(video.removed(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A recording split by time: a file's frames are those up to the first written a period or
    /// more after its own first frame (however long the stream paused before it); the next
    /// starts the next file, and `keep` counts files as for a split by size.
    #[test]
    fn a_recording_split_by_time_starts_a_file_each_period() {
        let dir = std::env::temp_dir().join(format!("fer-mjpeg-every-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let hour = Duration::from_secs(3600);
        let rotation = Rotation { split: Split::Every(hour), keep: Some(2) };
        let mut video = MjpegWriter::record(&dir, "t.mjpeg", Some(rotation)).unwrap();
        let t0 = Instant::now();
        let minutes = [0, 30, 59, 60, 61, 119, 500, 501];
        let mut went_to = Vec::new();
        for (i, m) in minutes.iter().enumerate() {
            went_to.push(video.path().file_name().unwrap().to_string_lossy().to_string());
            video.push_at(&picture(16, 12, i as u32), t0 + Duration::from_secs(m * 60)).unwrap();
        }
        // Minute 60 is a whole hour after the first file's first frame: its last. The second
        // file starts at 61; 119 is within its hour, 500 (after a pause) is past it.
        assert_eq!(went_to, ["t.mjpeg", "t.mjpeg", "t.mjpeg", "t.mjpeg", "t_1.mjpeg", "t_1.mjpeg", "t_1.mjpeg", "t_2.mjpeg"]);
        assert_eq!(video.removed(), 1);
        let count = |name: &str| frames(&std::fs::read(dir.join(name)).unwrap()).len();
        assert_eq!((count("t_1.mjpeg"), count("t_2.mjpeg")), (3, 1));
        assert!(!dir.join("t.mjpeg").exists(), "the oldest removed, two kept");
        // A file's period starts at its first frame, not when it was opened: a recording whose
        // first frame comes late does not end its first file at once.
        let mut late = MjpegWriter::record(&dir, "late.mjpeg", Some(rotation)).unwrap();
        late.push_at(&picture(16, 12, 0), t0 + hour * 5).unwrap();
        late.push_at(&picture(16, 12, 1), t0 + hour * 5 + Duration::from_secs(1)).unwrap();
        assert_eq!((late.files().count(), count("late.mjpeg")), (1, 2));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
