//! zstd compression of a plaintext before it is encrypted, which stores
//! what does not compress instead of spending CPU on it.
//!
//! A database can hold data no compressor shrinks (encrypted columns,
//! images, already-compressed blobs); zstd at level 3 still searches it for
//! matches, which on random bytes costs about as much CPU as on text, for
//! nothing. So the input is read in segments of [`SEGMENT_BYTES`]; a
//! sample from the front of each is compressed at zstd's level 1, and a
//! segment whose sample shrinks by less than 3% is stored: the current
//! zstd frame is ended and the segment written as a frame of raw blocks
//! (RFC 8878 §3.1.1: a frame header and blocks of type `Raw_Block`, which
//! every zstd decoder copies through). Compressible segments all go
//! through one streaming frame at the job's level, so their ratio is what
//! one zstd stream gives; a frame is only ended where stored data begins.
//! The result is an ordinary zstd stream of concatenated frames:
//! `zstd -d`, the zstd library and this tool's restore read it alike.

use std::io::{self, Read, Write};

/// Bytes per decision: large enough that ending a frame before stored
/// data costs compressible data nothing measurable, small enough that a
/// stretch of incompressible data is found.
pub const SEGMENT_BYTES: usize = 4 << 20;

/// Bytes from the front of a segment compressed to judge it.
const SAMPLE_BYTES: usize = 32 << 10;

/// A segment is stored when its sample compresses to more than this many
/// hundredths of its size.
const STORE_ABOVE_PERCENT: usize = 97;

/// The largest raw block (RFC 8878 §3.1.1.2.3: `Block_Maximum_Size`,
/// 128 KiB at most).
const RAW_BLOCK_BYTES: usize = 128 << 10;

/// The zstd frame magic number, little-endian (RFC 8878 §3.1.1).
const FRAME_MAGIC: [u8; 4] = [0x28, 0xB5, 0x2F, 0xFD];

/// Frame header descriptor of a stored segment: `Single_Segment_flag` set
/// (no window descriptor; the window is the content size) and an 8-byte
/// `Frame_Content_Size`; no checksum, no dictionary.
const STORED_FRAME_DESCRIPTOR: u8 = 0b1110_0000;

/// What a stored segment is being written as.
struct Stored {
    /// The next byte of the segment to write.
    at: usize,
    /// Bytes of the current raw block still to write.
    block_left: usize,
}

/// A reader of zstd-compressed `source`, storing incompressible segments.
pub struct Compressor<R> {
    source: R,
    level: i32,
    workers: u32,
    /// The open frame at `level`, writing into its own buffer.
    frame: Option<zstd::stream::write::Encoder<'static, Vec<u8>>>,
    probe: zstd::bulk::Compressor<'static>,
    /// The segment read, `segment_len` bytes of a buffer allocated once.
    segment: Vec<u8>,
    segment_len: usize,
    stored: Option<Stored>,
    /// Output waiting to be read, from `out_at` on.
    out: Vec<u8>,
    out_at: usize,
    /// Whether any frame has been begun: an empty input still needs one,
    /// since `zstd -d` refuses an empty file.
    begun: bool,
    finished: bool,
}

impl<R: Read> Compressor<R> {
    /// Compresses `source` at zstd `level` (1 to 22), with `workers` extra
    /// threads for the compressed frames (0: this one).
    ///
    /// # Errors
    ///
    /// zstd cannot set up a compression context.
    pub fn new(source: R, level: i32, workers: u32) -> io::Result<Self> {
        Ok(Compressor {
            source,
            level,
            workers,
            frame: None,
            probe: zstd::bulk::Compressor::new(1)?,
            segment: vec![0; SEGMENT_BYTES],
            segment_len: 0,
            stored: None,
            out: Vec::new(),
            out_at: 0,
            begun: false,
            finished: false,
        })
    }

    /// Reads the next segment and turns it into output.
    fn next_segment(&mut self) -> io::Result<()> {
        let mut filled = 0;
        while filled < SEGMENT_BYTES {
            match self.source.read(&mut self.segment[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return Err(err),
            }
        }
        self.segment_len = filled;
        if filled == 0 {
            if !self.begun {
                self.open_frame()?;
            }
            self.end_frame()?;
            self.finished = true;
        } else if self.compresses() {
            if self.frame.is_none() {
                self.open_frame()?;
            }
            if let Some(frame) = &mut self.frame {
                frame.write_all(&self.segment[..filled])?;
                self.out.append(frame.get_mut());
            }
        } else {
            self.begun = true;
            self.end_frame()?;
            self.out.extend_from_slice(&FRAME_MAGIC);
            self.out.push(STORED_FRAME_DESCRIPTOR);
            self.out.extend_from_slice(&(filled as u64).to_le_bytes());
            self.stored = Some(Stored {
                at: 0,
                block_left: 0,
            });
        }
        Ok(())
    }

    /// Begins a compressed frame at the job's level.
    fn open_frame(&mut self) -> io::Result<()> {
        let mut frame = zstd::stream::write::Encoder::new(Vec::new(), self.level)?;
        if self.workers > 0 {
            frame.multithread(self.workers)?;
        }
        self.frame = Some(frame);
        self.begun = true;
        Ok(())
    }

    /// Whether the segment's sample shrinks enough to be worth compressing.
    fn compresses(&mut self) -> bool {
        let sample = &self.segment[..self.segment_len.min(SAMPLE_BYTES)];
        match self.probe.compress(sample) {
            Ok(compressed) => compressed.len() * 100 <= sample.len() * STORE_ABOVE_PERCENT,
            Err(_) => true,
        }
    }

    /// Ends the open compressed frame, if any, into the output.
    fn end_frame(&mut self) -> io::Result<()> {
        if let Some(frame) = self.frame.take() {
            let rest = frame.finish()?;
            self.out.extend_from_slice(&rest);
        }
        Ok(())
    }
}

impl<R: Read> Compressor<R> {
    /// Serves output into `buf` from what is prepared, preparing more
    /// (reading the next segment, at most once a call, only while `buf` is
    /// still empty, so a slow source never holds back output already
    /// made); 0 at the end of the stream or when `buf` must go as it is.
    fn serve(&mut self, buf: &mut [u8], may_read: bool) -> io::Result<usize> {
        loop {
            if self.out_at < self.out.len() {
                let n = buf.len().min(self.out.len() - self.out_at);
                buf[..n].copy_from_slice(&self.out[self.out_at..self.out_at + n]);
                self.out_at += n;
                return Ok(n);
            }
            self.out.clear();
            self.out_at = 0;
            if let Some(stored) = &mut self.stored {
                if stored.block_left > 0 {
                    let n = buf.len().min(stored.block_left);
                    buf[..n].copy_from_slice(&self.segment[stored.at..stored.at + n]);
                    stored.at += n;
                    stored.block_left -= n;
                    return Ok(n);
                }
                if stored.at < self.segment_len {
                    // Block_Header: Last_Block, Block_Type 0 (raw), Block_Size
                    let size = RAW_BLOCK_BYTES.min(self.segment_len - stored.at);
                    let last = usize::from(stored.at + size == self.segment_len);
                    let header = (size << 3) | last;
                    self.out.extend_from_slice(&header.to_le_bytes()[..3]);
                    stored.block_left = size;
                    continue;
                }
                self.stored = None;
            }
            if self.finished || !may_read {
                return Ok(0);
            }
            self.next_segment()?;
        }
    }
}

impl<R: Read> Read for Compressor<R> {
    /// Fills `buf` as far as the prepared output goes (a stored segment's
    /// block headers and blocks together), so the consumer gets few large
    /// reads rather than a 3-byte header between every 128 KiB.
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut filled = 0;
        while filled < buf.len() {
            let n = self.serve(&mut buf[filled..], filled == 0)?;
            if n == 0 {
                break;
            }
            filled += n;
        }
        Ok(filled)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Text that compresses like a dump's rows, and bytes that do not.
    fn text(bytes: usize) -> Vec<u8> {
        (0..)
            .map(|i: u64| {
                format!(
                    "{i}\tcustomer {}\t2024-01-{:02}\tpaid\n",
                    i % 977,
                    i % 28 + 1
                )
            })
            .flat_map(String::into_bytes)
            .take(bytes)
            .collect()
    }

    fn noise(bytes: usize) -> Vec<u8> {
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        (0..bytes)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 24) as u8
            })
            .collect()
    }

    fn compress(input: &[u8], read_size: usize) -> Vec<u8> {
        let mut compressor = Compressor::new(input, 3, 0).unwrap();
        let mut out = Vec::new();
        let mut buf = vec![0; read_size];
        loop {
            let n = compressor.read(&mut buf).unwrap();
            if n == 0 {
                return out;
            }
            out.extend_from_slice(&buf[..n]);
        }
    }

    /// The restore side's decoder (`restore::pipeline`).
    fn decode(compressed: &[u8]) -> Vec<u8> {
        let mut decoder = zstd::stream::write::Decoder::new(Vec::new()).unwrap();
        decoder.write_all(compressed).unwrap();
        decoder.flush().unwrap();
        decoder.into_inner()
    }

    #[test]
    fn incompressible_segments_are_stored_and_the_rest_compressed() {
        // decided per segment: text, two segments of noise, text
        let mut input = text(SEGMENT_BYTES);
        input.extend(noise(2 * SEGMENT_BYTES));
        input.extend(text(SEGMENT_BYTES + 12_345));
        for read_size in [7, 64 << 10, 1 << 20] {
            let compressed = compress(&input, read_size);
            assert!(decode(&compressed) == input, "read size {read_size}");
            // the noise is stored (13 header bytes a segment, 3 a 128 KiB
            // block), the text shrinks
            let stored = 2 * SEGMENT_BYTES;
            let stored_frames = compressed
                .windows(5)
                .filter(|w| w[..4] == FRAME_MAGIC && w[4] == STORED_FRAME_DESCRIPTOR)
                .count();
            assert_eq!(stored_frames, 2);
            assert!(compressed.len() > stored, "{}", compressed.len());
            assert!(
                compressed.len() < stored + SEGMENT_BYTES / 4,
                "{}",
                compressed.len()
            );
        }
    }

    #[test]
    fn compressible_input_shrinks_as_one_zstd_stream_would() {
        let input = text(9 << 20);
        let ours = compress(&input, 1 << 20);
        let plain = zstd::encode_all(&input[..], 3).unwrap();
        assert!(decode(&ours) == input);
        assert!(
            ours.len() * 100 <= plain.len() * 101,
            "{} vs {}",
            ours.len(),
            plain.len()
        );
    }

    /// A stored segment goes to the reader in reads as large as its
    /// buffer, block headers and blocks together: one per MiB here, plus
    /// at most one short read where a segment ends.
    #[test]
    fn stored_segments_are_read_in_whole_buffers() {
        let input = noise(3 * SEGMENT_BYTES);
        let mut compressor = Compressor::new(&input[..], 3, 0).unwrap();
        let mut buf = vec![0; 1 << 20];
        let (mut reads, mut short) = (0, 0);
        loop {
            let n = compressor.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            reads += 1;
            short += usize::from(n < buf.len());
        }
        assert!(short <= 3, "{short} short reads of {reads}");
    }

    /// An empty table dumps to an empty file; its object is still a zstd
    /// stream (one empty frame), which `zstd -d` and the library read.
    #[test]
    fn empty_input_becomes_one_empty_frame() {
        let compressed = compress(&[], 16);
        assert_eq!(compressed[..4], FRAME_MAGIC);
        assert!(decode(&compressed).is_empty());
        assert!(unzstd(&compressed).is_empty());
    }

    /// What an operator restoring by hand runs: `zstd -d`.
    #[test]
    fn the_zstd_command_reads_stored_and_compressed_frames_alike() {
        let mut input = noise(5 << 20);
        input.extend(text(1 << 20));
        let compressed = compress(&input, 1 << 16);
        assert!(unzstd(&compressed) == input);
    }

    /// Decompresses with the `zstd` command, as an operator would.
    fn unzstd(compressed: &[u8]) -> Vec<u8> {
        let output = crate::process::run_with_input(
            {
                let mut zstd = std::process::Command::new("zstd");
                zstd.args(["-d", "-q", "-c"]);
                zstd
            },
            compressed,
        )
        .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        output.stdout
    }
}
