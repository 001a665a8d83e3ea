//! Module file compression: detection by magic bytes and decompression in user space.
//!
//! The kernel (6.4+) can decompress a module itself when `finit_module` gets
//! `MODULE_INIT_COMPRESSED_FILE`, but only with the one decompressor it was built with (named in
//! `/sys/module/compression`). Anything else is decompressed here and handed to `init_module`.
//! The decoders are pure Rust (lzma-rs, ruzstd, miniz_oxide) so the binary stays static for an
//! initramfs, at about half the C libraries' throughput for xz, a fifth for zstd.

use std::io::Read;

/// How a module file is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Xz,
    Zstd,
    Gzip,
}

impl Compression {
    /// From the file's first bytes: zstd `28 B5 2F FD`, xz `FD 37 7A 58 5A 00`, gzip `1F 8B`.
    pub fn detect(head: &[u8]) -> Compression {
        if head.starts_with(&[0x28, 0xB5, 0x2F, 0xFD]) {
            Compression::Zstd
        } else if head.starts_with(&[0xFD, 0x37, 0x7A, 0x58, 0x5A, 0x00]) {
            Compression::Xz
        } else if head.starts_with(&[0x1F, 0x8B]) {
            Compression::Gzip
        } else {
            Compression::None
        }
    }

    /// The kernel's name for it in `/sys/module/compression`.
    pub fn kernel_name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Xz => "xz",
            Compression::Zstd => "zstd",
            Compression::Gzip => "gzip",
        }
    }

    pub fn from_kernel_name(name: &str) -> Option<Compression> {
        match name.trim() {
            "xz" => Some(Compression::Xz),
            "zstd" => Some(Compression::Zstd),
            "gzip" => Some(Compression::Gzip),
            _ => None,
        }
    }
}

/// Why a module could not be decompressed.
#[derive(Debug)]
pub struct DecompressError {
    pub compression: Compression,
    pub message: String,
}

impl std::fmt::Display for DecompressError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "corrupt or truncated {} data: {}",
            self.compression.kernel_name(),
            self.message
        )
    }
}

/// No module comes near this; a stream that expands past it is treated as corrupt rather than
/// allowed to exhaust memory.
pub const MAX_MODULE_SIZE: u64 = 1 << 30;

/// Decompresses `data` compressed with `compression`; the result must be an ELF object.
pub fn decompress(compression: Compression, data: &[u8]) -> Result<Vec<u8>, DecompressError> {
    let err = |message: String| DecompressError {
        compression,
        message,
    };
    let mut out = Vec::with_capacity(data.len() * 4);
    match compression {
        Compression::None => out.extend_from_slice(data),
        Compression::Xz => {
            let mut input = std::io::BufReader::new(data);
            let mut limited = LimitedWriter(&mut out);
            lzma_rs::xz_decompress(&mut input, &mut limited).map_err(|e| err(e.to_string()))?;
        }
        Compression::Zstd => {
            let decoder =
                ruzstd::decoding::StreamingDecoder::new(data).map_err(|e| err(e.to_string()))?;
            read_limited(decoder, &mut out).map_err(|e| err(e.to_string()))?;
        }
        Compression::Gzip => {
            read_limited(flate2::read::MultiGzDecoder::new(data), &mut out)
                .map_err(|e| err(e.to_string()))?;
        }
    }
    if !out.starts_with(b"\x7fELF") {
        return Err(err("the decompressed data is not an ELF object".into()));
    }
    Ok(out)
}

fn read_limited(reader: impl Read, out: &mut Vec<u8>) -> std::io::Result<()> {
    let n = reader.take(MAX_MODULE_SIZE + 1).read_to_end(out)?;
    if n as u64 > MAX_MODULE_SIZE {
        return Err(std::io::Error::other("larger than 1 GiB"));
    }
    Ok(())
}

struct LimitedWriter<'a>(&'a mut Vec<u8>);

impl std::io::Write for LimitedWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.0.len() as u64 + buf.len() as u64 > MAX_MODULE_SIZE {
            return Err(std::io::Error::other("larger than 1 GiB"));
        }
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    const ELF: &[u8] = b"\x7fELF\x02\x01\x01 a tiny stand-in for a module";

    #[test]
    fn detects_by_magic() {
        assert_eq!(
            Compression::detect(b"\x28\xb5\x2f\xfd.."),
            Compression::Zstd
        );
        assert_eq!(Compression::detect(b"\xfd7zXZ\0.."), Compression::Xz);
        assert_eq!(Compression::detect(b"\x1f\x8b.."), Compression::Gzip);
        assert_eq!(Compression::detect(b"\x7fELF"), Compression::None);
        assert_eq!(Compression::detect(b""), Compression::None);
    }

    #[test]
    fn gzip_round_trip_and_corruption() {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(ELF).unwrap();
        let gz = enc.finish().unwrap();
        assert_eq!(decompress(Compression::Gzip, &gz).unwrap(), ELF);
        assert!(decompress(Compression::Gzip, &gz[..gz.len() / 2]).is_err());
        let mut bad = gz.clone();
        bad[12] ^= 0xFF;
        assert!(decompress(Compression::Gzip, &bad).is_err());
    }

    #[test]
    fn xz_round_trip_and_truncation() {
        let mut xz = Vec::new();
        lzma_rs::xz_compress(&mut std::io::BufReader::new(ELF), &mut xz).unwrap();
        assert_eq!(decompress(Compression::Xz, &xz).unwrap(), ELF);
        for cut in [0, 5, xz.len() / 2, xz.len() - 1] {
            assert!(
                decompress(Compression::Xz, &xz[..cut]).is_err(),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn not_elf_is_refused() {
        let mut xz = Vec::new();
        lzma_rs::xz_compress(&mut std::io::BufReader::new(&b"hello"[..]), &mut xz).unwrap();
        assert!(decompress(Compression::Xz, &xz).is_err());
    }
}
