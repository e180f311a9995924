//! Reads the WAL's frame headers to tell a write cut short by a crash from
//! damage in the middle of the file.
//!
//! When SQLite opens a database it replays the WAL up to the first frame
//! whose checksum fails and silently drops everything after it: right for
//! the frames of a transaction a crash interrupted (never acknowledged,
//! since a commit is answered only after its fsync), but a damaged frame
//! in the middle would drop transactions that were acknowledged. Those
//! leave a trace: frames after the bad one that carry the current salts
//! and mark a commit. One such commit can still be the interrupted
//! transaction's own last frame; two or more cannot.
//! Format: <https://www.sqlite.org/fileformat2.html#walformat>.

use std::io::{BufReader, ErrorKind, Read};
use std::path::Path;

const HEADER: usize = 32;
const FRAME_HEADER: usize = 24;
const MAGIC_LITTLE_ENDIAN: u32 = 0x377f_0682;
const MAGIC_BIG_ENDIAN: u32 = 0x377f_0683;

/// Damage in the data directory's WAL file, as a sentence for the operator.
/// Reads the file once, a frame at a time.
pub fn damage_in(wal: &Path) -> std::io::Result<Option<String>> {
    match std::fs::File::open(wal) {
        Ok(file) => damage(BufReader::with_capacity(1 << 20, file)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

fn damage(mut wal: impl Read) -> std::io::Result<Option<String>> {
    let word = |bytes: &[u8], at: usize| u32::from_be_bytes(bytes[at..at + 4].try_into().expect("four bytes"));
    let mut header = [0; HEADER];
    if !read_whole(&mut wal, &mut header)? {
        return Ok(None);
    }
    let big_endian = match word(&header, 0) {
        MAGIC_LITTLE_ENDIAN => false,
        MAGIC_BIG_ENDIAN => true,
        // Not a WAL header, or a damaged one: SQLite then ignores the whole
        // file, and without the salts no frame can be read to say more.
        _ => return Ok(None),
    };
    let page_size = word(&header, 8) as usize;
    let mut sum = checksum((0, 0), &header[..24], big_endian);
    if !(512..=65536).contains(&page_size)
        || !page_size.is_power_of_two()
        || sum != (word(&header, 24), word(&header, 28))
    {
        return Ok(None);
    }
    let salts = (word(&header, 16), word(&header, 20));
    let mut frame = vec![0; FRAME_HEADER + page_size];
    let mut bad = None;
    let mut frames = 0;
    let mut later_commits = 0;
    while read_whole(&mut wal, &mut frame)? {
        frames += 1;
        let current = (word(&frame, 8), word(&frame, 12)) == salts;
        if bad.is_some() {
            later_commits += usize::from(current && word(&frame, 4) != 0);
            continue;
        }
        sum = checksum(sum, &frame[..8], big_endian);
        sum = checksum(sum, &frame[FRAME_HEADER..], big_endian);
        if !(current && word(&frame, 0) != 0 && sum == (word(&frame, 16), word(&frame, 20))) {
            bad = Some(frames);
        }
    }
    Ok(bad.filter(|_| later_commits >= 2).map(|bad| {
        format!(
            "WAL frame {bad} of {frames} is damaged and {later_commits} committed transactions follow it; \
             opening the database would drop them (moving the file aside accepts that)"
        )
    }))
}

/// Fills `buf`, or returns false at the end of the file (a torn last frame
/// included).
fn read_whole(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<bool> {
    match r.read_exact(buf) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == ErrorKind::UnexpectedEof => Ok(false),
        Err(e) => Err(e),
    }
}

/// SQLite's WAL checksum: Fibonacci-weighted sums of 32-bit words.
fn checksum((mut s0, mut s1): (u32, u32), bytes: &[u8], big_endian: bool) -> (u32, u32) {
    for pair in bytes.chunks_exact(8) {
        let word = |b: &[u8]| {
            let b: [u8; 4] = b.try_into().expect("four bytes");
            if big_endian { u32::from_be_bytes(b) } else { u32::from_le_bytes(b) }
        };
        s0 = s0.wrapping_add(word(&pair[..4])).wrapping_add(s1);
        s1 = s1.wrapping_add(word(&pair[4..])).wrapping_add(s0);
    }
    (s0, s1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::Connection;

    const PAGE: usize = 4096;
    const FRAME: usize = FRAME_HEADER + PAGE;

    /// A database whose ten transactions are all still in its WAL, copied
    /// while open (as a crash would leave it); returns the WAL's bytes.
    fn wal_of_ten_commits(dir: &Path) -> Vec<u8> {
        let conn = Connection::open(dir.join("live.db")).unwrap();
        conn.pragma_update(None, "page_size", PAGE as i64).unwrap();
        conn.pragma_update(None, "journal_mode", "WAL").unwrap();
        conn.pragma_update(None, "wal_autocheckpoint", 0).unwrap();
        conn.execute_batch("CREATE TABLE t (v TEXT)").unwrap();
        for i in 0..10 {
            conn.execute("INSERT INTO t VALUES (?1)", [format!("{i}").repeat(3000)]).unwrap();
        }
        std::fs::read(dir.join("live.db-wal")).unwrap()
    }

    fn flip_byte_of_frame(wal: &mut [u8], frame: usize) {
        wal[HEADER + frame * FRAME + FRAME_HEADER + 100] ^= 0xff;
    }

    #[test]
    fn an_intact_wal_and_one_whose_last_frame_is_torn_are_not_damage() {
        let dir = tempfile::tempdir().unwrap();
        let mut wal = wal_of_ten_commits(dir.path());
        assert_eq!(damage(&wal[..]).unwrap(), None);
        let frames = (wal.len() - HEADER) / FRAME;
        flip_byte_of_frame(&mut wal, frames - 1);
        assert_eq!(damage(&wal[..]).unwrap(), None);
        assert_eq!(damage(&wal[..wal.len() - 10]).unwrap(), None);
        assert_eq!(damage(&[][..]).unwrap(), None);
    }

    #[test]
    fn a_damaged_frame_followed_by_commits_is_damage_that_sqlite_would_silently_drop() {
        let dir = tempfile::tempdir().unwrap();
        let mut wal = wal_of_ten_commits(dir.path());
        flip_byte_of_frame(&mut wal, 3);
        let found = damage(&wal[..]).unwrap().expect("damage reported");
        assert!(found.starts_with("WAL frame 4 of"), "{found}");

        // What the check protects against: SQLite opens the copy and
        // finds fewer rows, with no error.
        std::fs::copy(dir.path().join("live.db"), dir.path().join("copy.db")).unwrap();
        std::fs::write(dir.path().join("copy.db-wal"), &wal).unwrap();
        let copy = Connection::open(dir.path().join("copy.db")).unwrap();
        let rows: i64 = copy.query_row("SELECT count(*) FROM t", [], |r| r.get(0)).unwrap();
        assert!(rows < 10, "{rows} rows");
    }
}
