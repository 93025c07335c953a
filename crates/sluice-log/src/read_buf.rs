//! Reused read buffers: [`ShardLog::read`](crate::ShardLog::read) reads its spans into memory
//! that earlier reads on the same thread already touched.
//!
//! A fresh buffer per read made every read pay for new memory (page faults and the kernel's or
//! the allocator's zeroing, often for a fresh `mmap` of several MiB). Instead each thread keeps one
//! [`BytesMut`]; a read takes its span from it with [`BytesMut::split`] and hands it out frozen as
//! [`Bytes`] that the entries' payloads share. Once every entry of earlier reads is dropped, the
//! next `reserve` finds the allocation unreferenced and starts over at its front; while entries
//! are still alive, their bytes are never written again (`reserve` then takes new memory).
//!
//! A thread keeps at most [`KEEP_MAX`] bytes: a larger span gets a buffer of its own, freed with
//! its entries. The reads run on the blocking pool, whose idle threads exit (and free their
//! buffer) after a few seconds.

use std::cell::RefCell;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use bytes::{Bytes, BytesMut};

/// Largest span read into a thread's kept buffer.
pub(crate) const KEEP_MAX: usize = 8 << 20;

thread_local! {
    static SPARE: RefCell<BytesMut> = RefCell::new(BytesMut::new());
}

/// Reads exactly `len` bytes at `offset` of `file`.
pub(crate) fn read_exact_at(file: &File, offset: u64, len: usize) -> io::Result<Bytes> {
    if len > KEEP_MAX {
        let mut own = vec![0u8; len];
        file.read_exact_at(&mut own, offset)?;
        return Ok(Bytes::from(own));
    }
    SPARE.with(|cell| {
        let mut spare = cell.borrow_mut();
        spare.reserve(len);
        // Writes zeros only where this allocation has not been handed out yet or was handed out
        // and given back: memory this thread touched before, not fresh pages.
        spare.resize(len, 0);
        let read = file.read_exact_at(&mut spare[..], offset);
        let filled = spare.split();
        read.map(|()| filled.freeze())
    })
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn file_with(bytes: &[u8]) -> File {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(bytes).unwrap();
        f
    }

    #[test]
    fn reads_exact_bytes_and_reports_short_files() {
        let data: Vec<u8> = (0..=255u8).cycle().take(10_000).collect();
        let f = file_with(&data);
        assert_eq!(&read_exact_at(&f, 100, 5000).unwrap()[..], &data[100..5100]);
        let err = read_exact_at(&f, 9_000, 2_000).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        // The failed read leaves the buffer usable.
        assert_eq!(&read_exact_at(&f, 0, 10).unwrap()[..], &data[..10]);
    }

    #[test]
    fn live_reads_are_never_overwritten() {
        let f = file_with(&[1u8; 4096]);
        let g = file_with(&[2u8; 4096]);
        let first = read_exact_at(&f, 0, 4096).unwrap();
        let held = first.slice(10..20);
        drop(first);
        for _ in 0..5 {
            assert!(read_exact_at(&g, 0, 4096).unwrap().iter().all(|&b| b == 2));
        }
        assert!(held.iter().all(|&b| b == 1));
    }

    #[test]
    fn dropped_reads_give_their_memory_back_to_the_next_read() {
        let f = file_with(&[7u8; 1 << 16]);
        let first = read_exact_at(&f, 0, 1 << 16).unwrap();
        let at = first.as_ptr();
        drop(first);
        let second = read_exact_at(&f, 0, 1 << 15).unwrap();
        assert_eq!(
            second.as_ptr(),
            at,
            "the second read reuses the first one's memory"
        );
        assert!(second.iter().all(|&b| b == 7));
    }

    #[test]
    fn spans_over_the_limit_get_their_own_buffer() {
        let f = file_with(&vec![3u8; KEEP_MAX + 1]);
        let big = read_exact_at(&f, 0, KEEP_MAX + 1).unwrap();
        assert_eq!(big.len(), KEEP_MAX + 1);
        assert!(big.iter().all(|&b| b == 3));
    }
}
