//! The one codec for pull, import, build and export (as systemd's import-compress.c
//! serves pull, import and export): the compression of a stream detected from its magic
//! bytes, decoders with the same limits everywhere (xz memory bounded, concatenated
//! gzip members and xz streams read to the end, zstd's default window cap), and the
//! encoders export uses, with fixed settings so their output is reproducible.

use std::io::{self, Read, Write};

/// A stream's compression.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Compression {
    None,
    Gzip,
    Xz,
    Zstd,
}

/// Memory the xz decoder may use. `xz -9` streams need 65 MiB; a header asking for a
/// multi-GiB dictionary is refused before the allocation, not after (zstd's decoder
/// caps its window at 128 MiB by default; gzip's is 32 KiB).
pub(crate) const XZ_MEMLIMIT: u64 = 256 << 20;

/// The tarball names export writes, and their compression.
const TAR_NAMES: [(&[u8], Compression); 7] = [
    (b".tar", Compression::None),
    (b".tar.gz", Compression::Gzip),
    (b".tgz", Compression::Gzip),
    (b".tar.xz", Compression::Xz),
    (b".txz", Compression::Xz),
    (b".tar.zst", Compression::Zstd),
    (b".tzst", Compression::Zstd),
];

impl Compression {
    /// From a stream's first bytes (6 are enough).
    pub(crate) fn detect(head: &[u8]) -> Compression {
        if head.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0x00]) {
            Compression::Xz
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else {
            Compression::None
        }
    }

    /// From a tarball's file name (`x.tar.zst`); None for any other name.
    pub(crate) fn of_tar_name(name: &[u8]) -> Option<Compression> {
        TAR_NAMES
            .iter()
            .find(|(ext, _)| name.len() > ext.len() && name.ends_with(ext))
            .map(|&(_, c)| c)
    }

    /// A decoder of `r`. Errors of a read past the xz memory limit are recognised by
    /// `is_memlimit`.
    pub(crate) fn decoder<'a, R: Read + 'a>(self, r: R) -> io::Result<Box<dyn Read + 'a>> {
        Ok(match self {
            Compression::None => Box::new(r),
            Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(r)),
            // pxz and pixz write several concatenated streams.
            Compression::Xz => Box::new(xz_decoder(r, XZ_MEMLIMIT)?),
            Compression::Zstd => Box::new(zstd::stream::read::Decoder::new(r)?),
        })
    }

    /// An encoder into `w` with fixed settings, single-threaded: the compressed bytes
    /// are as reproducible as the input (gzip: no name, mtime 0; zstd with a checksum).
    pub(crate) fn encoder<W: Write>(self, w: W) -> io::Result<Encoder<W>> {
        Ok(match self {
            Compression::None => Encoder::Plain(w),
            Compression::Gzip => {
                Encoder::Gzip(flate2::GzBuilder::new().write(w, flate2::Compression::new(6)))
            }
            Compression::Xz => Encoder::Xz(xz2::write::XzEncoder::new(w, 6)),
            Compression::Zstd => {
                let mut enc = zstd::stream::write::Encoder::new(w, 3)?;
                enc.include_checksum(true)?;
                Encoder::Zstd(enc)
            }
        })
    }
}

/// An xz decoder of concatenated streams that uses at most `memlimit` bytes.
pub(crate) fn xz_decoder<R: Read>(r: R, memlimit: u64) -> io::Result<xz2::read::XzDecoder<R>> {
    let stream = xz2::stream::Stream::new_stream_decoder(memlimit, xz2::stream::CONCATENATED)
        .map_err(io::Error::other)?;
    Ok(xz2::read::XzDecoder::new_stream(r, stream))
}

/// Whether `e` is the xz decoder refusing a stream that needs more than XZ_MEMLIMIT.
pub(crate) fn is_memlimit(e: &io::Error) -> bool {
    let inner = e
        .get_ref()
        .and_then(|i| i.downcast_ref::<xz2::stream::Error>());
    matches!(inner, Some(xz2::stream::Error::MemLimit))
}

/// A compressing writer; `finish` writes the trailer and returns the inner writer.
pub(crate) enum Encoder<W: Write> {
    Plain(W),
    Gzip(flate2::write::GzEncoder<W>),
    Xz(xz2::write::XzEncoder<W>),
    Zstd(zstd::stream::write::Encoder<'static, W>),
}

impl<W: Write> Encoder<W> {
    pub(crate) fn finish(self) -> io::Result<W> {
        match self {
            Encoder::Plain(w) => Ok(w),
            Encoder::Gzip(e) => e.finish(),
            Encoder::Xz(e) => e.finish(),
            Encoder::Zstd(e) => e.finish(),
        }
    }
}

impl<W: Write> Write for Encoder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Encoder::Plain(w) => w.write(buf),
            Encoder::Gzip(e) => e.write(buf),
            Encoder::Xz(e) => e.write(buf),
            Encoder::Zstd(e) => e.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Encoder::Plain(w) => w.flush(),
            Encoder::Gzip(e) => e.flush(),
            Encoder::Xz(e) => e.flush(),
            Encoder::Zstd(e) => e.flush(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Compression; 4] = [
        Compression::None,
        Compression::Gzip,
        Compression::Xz,
        Compression::Zstd,
    ];

    fn encode(c: Compression, data: &[u8]) -> Vec<u8> {
        let mut e = c.encoder(Vec::new()).unwrap();
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn decode(c: Compression, data: &[u8]) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        c.decoder(data)?.read_to_end(&mut out)?;
        Ok(out)
    }

    #[test]
    fn round_trip_and_detection() {
        for c in ALL {
            let bytes = encode(c, b"hello tar");
            assert_eq!(Compression::detect(&bytes), c, "{c:?}");
            assert_eq!(decode(c, &bytes).unwrap(), b"hello tar");
            // The same input gives the same bytes.
            assert_eq!(bytes, encode(c, b"hello tar"));
        }
    }

    /// Concatenated members and streams are read to the end (multi-member gzip,
    /// pxz's several xz streams), for every user of the codec.
    #[test]
    fn concatenated_members_are_read_whole() {
        for c in [Compression::Gzip, Compression::Xz, Compression::Zstd] {
            let mut bytes = encode(c, b"one ");
            bytes.extend(encode(c, b"two"));
            assert_eq!(decode(c, &bytes).unwrap(), b"one two", "{c:?}");
        }
    }

    #[test]
    fn xz_asking_for_too_much_memory_is_refused() {
        // An xz stream whose LZMA2 dictionary is 1.5 GiB: its header asks for more
        // memory than XZ_MEMLIMIT before any data is decoded.
        let mut opts = xz2::stream::LzmaOptions::new_preset(0).unwrap();
        opts.dict_size(1536 << 20);
        let mut filters = xz2::stream::Filters::new();
        filters.lzma2(&opts);
        let stream =
            xz2::stream::Stream::new_stream_encoder(&filters, xz2::stream::Check::Crc64).unwrap();
        let mut e = xz2::write::XzEncoder::new_stream(Vec::new(), stream);
        e.write_all(b"x").unwrap();
        let bytes = e.finish().unwrap();
        let err = decode(Compression::Xz, &bytes).unwrap_err();
        assert!(is_memlimit(&err), "{err}");
    }

    #[test]
    fn tar_names() {
        assert_eq!(
            Compression::of_tar_name(b"a.tar.zst"),
            Some(Compression::Zstd)
        );
        assert_eq!(Compression::of_tar_name(b"a.tgz"), Some(Compression::Gzip));
        assert_eq!(Compression::of_tar_name(b"a.tar"), Some(Compression::None));
        assert_eq!(Compression::of_tar_name(b".tar"), None);
        assert_eq!(Compression::of_tar_name(b"a.zip"), None);
    }
}
