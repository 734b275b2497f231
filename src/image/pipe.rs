//! A bounded pipe of byte chunks between two threads. The pull pipeline runs download
//! and hash, decompression, and tar extraction on different cores, like a shell
//! pipeline, with memory bounded by `DEPTH` chunks in flight.

use std::io::{self, Read};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};

/// Chunk size the producers read in; large enough to keep the channel cheap.
pub(crate) const CHUNK: usize = 256 << 10;
/// Chunks in flight between two stages.
pub(crate) const DEPTH: usize = 16;

pub(crate) type Sender = SyncSender<io::Result<Vec<u8>>>;

pub(crate) fn pipe() -> (Sender, PipeReader) {
    pipe_depth(DEPTH)
}

/// A pipe with `depth` chunks in flight: several pipelines at once (an OCI image's
/// layers) each get a shorter one, so their sum stays near one pull's.
pub(crate) fn pipe_depth(depth: usize) -> (Sender, PipeReader) {
    let (tx, rx) = sync_channel(depth.max(1));
    (
        tx,
        PipeReader {
            rx,
            buf: Vec::new(),
            pos: 0,
        },
    )
}

/// The consumer's end: end of stream when every sender is gone; a sent error is
/// returned once, where the stream breaks.
pub(crate) struct PipeReader {
    rx: Receiver<io::Result<Vec<u8>>>,
    buf: Vec<u8>,
    pos: usize,
}

impl Read for PipeReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.buf.len() {
            match self.rx.recv() {
                Ok(chunk) => {
                    self.buf = chunk?;
                    self.pos = 0;
                }
                Err(_) => return Ok(0),
            }
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Reads `input` to its end in chunks, giving each to `inspect` and then to `tx`.
/// Returns false if the consumer hung up; with `drain`, reading then goes on to the
/// end without sending (so a hash still covers every byte).
pub(crate) fn feed(
    input: &mut dyn Read,
    tx: &Sender,
    drain: bool,
    mut inspect: impl FnMut(&[u8]),
) -> io::Result<bool> {
    let mut consumer_alive = true;
    loop {
        let mut buf = vec![0u8; CHUNK];
        let n = match input.read(&mut buf) {
            Ok(0) => return Ok(consumer_alive),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                let _ = tx.send(Err(io::Error::new(e.kind(), e.to_string())));
                return Err(e);
            }
        };
        buf.truncate(n);
        inspect(&buf);
        if consumer_alive && tx.send(Ok(buf)).is_err() {
            consumer_alive = false;
            if !drain {
                return Ok(false);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_arrive_in_order() {
        let (tx, mut rx) = pipe();
        tx.send(Ok(b"ab".to_vec())).unwrap();
        tx.send(Ok(b"cde".to_vec())).unwrap();
        drop(tx);
        let mut s = String::new();
        rx.read_to_string(&mut s).unwrap();
        assert_eq!(s, "abcde");
    }

    #[test]
    fn feed_drains_after_hangup_only_when_asked() {
        let data = vec![7u8; CHUNK * 3 + 5];
        for drain in [true, false] {
            let (tx, rx) = pipe();
            drop(rx);
            let mut seen = 0;
            let alive = feed(&mut &data[..], &tx, drain, |c| seen += c.len()).unwrap();
            assert!(!alive);
            assert_eq!(seen == data.len(), drain);
        }
    }

    #[test]
    fn errors_reach_the_consumer() {
        struct Broken;
        impl Read for Broken {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                Err(io::Error::other("boom"))
            }
        }
        let (tx, mut rx) = pipe();
        assert!(feed(&mut Broken, &tx, true, |_| {}).is_err());
        drop(tx);
        assert!(rx.read(&mut [0; 4]).is_err());
    }
}
