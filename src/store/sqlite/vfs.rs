//! A thin layer over SQLite's default VFS for the writer's connection: the frames a commit appends
//! to the WAL are gathered in memory and reach the file in one write, when SQLite syncs the WAL (or
//! reads it back, asks its size, truncates it, or the buffer fills), instead of two writes per page.
//!
//! **Why.** SQLite writes each WAL frame as two `pwrite`s (its 24-byte header, then the page). A
//! commit dirties about a dozen 1 KiB pages (random CIDs in several indexes), so a batch of commits
//! made hundreds of system calls, which were half of the writer thread's CPU time in profiles of the
//! running gateway.
//!
//! **Durability is unchanged.** Writes keep their order: the buffer only ever holds one contiguous
//! run of the latest writes, and any other call on the file writes it out first. With
//! `synchronous=FULL` SQLite syncs the WAL before it makes a commit visible to other connections
//! and before it reports the commit done, and the sync writes the buffer out first; so every byte
//! is in the file before the fsync that makes it durable, as without this layer. A failed write
//! surfaces at the sync, and SQLite rolls the transaction back as it would for a failed write.
//!
//! Every other file (the database, temporary files) and every other connection use the default VFS
//! directly: this layer opens them straight into SQLite's own file object, with no indirection.

use std::ffi::{CStr, c_char, c_int, c_void};
use std::ptr;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicPtr, Ordering};

use rusqlite::ffi;

/// The name connections open the layer by.
pub(super) const NAME: &CStr = c"ucan-gateway-wal";

/// Most bytes gathered before they are written anyway. SQLite's unix VFS takes writes of less than
/// 128 KiB only (it keeps 17 bits of the length: a write of exactly 128 KiB writes nothing and
/// fails as a full disk); a batch of 32 commits is about 350 KiB.
const BUFFER: usize = 64 << 10;

/// The VFS this layer sits on (the default one when it was registered).
static BELOW: AtomicPtr<ffi::sqlite3_vfs> = AtomicPtr::new(ptr::null_mut());

/// Registers the layer once per process; the name to open connections with, or SQLite's error
/// code.
pub(super) fn register() -> Result<&'static CStr, c_int> {
    static REGISTERED: OnceLock<c_int> = OnceLock::new();
    let rc = *REGISTERED.get_or_init(|| {
        // SAFETY: `sqlite3_vfs_find` and `sqlite3_vfs_register` are thread-safe; the registered
        // struct is leaked, so it lives as long as SQLite may use it.
        unsafe {
            let below = ffi::sqlite3_vfs_find(ptr::null());
            if below.is_null() {
                return ffi::SQLITE_ERROR;
            }
            let Ok(wrapper) = c_int::try_from(std::mem::size_of::<WalFile>()) else {
                return ffi::SQLITE_ERROR;
            };
            BELOW.store(below, Ordering::Release);
            let mut vfs = *below;
            // Big enough for a WAL file (ours, then the default VFS's right after it) and for any
            // other file (the default VFS's alone).
            vfs.szOsFile = wrapper + (*below).szOsFile;
            vfs.zName = NAME.as_ptr();
            vfs.pNext = ptr::null_mut();
            vfs.xOpen = Some(open);
            ffi::sqlite3_vfs_register(Box::leak(Box::new(vfs)), 0)
        }
    });
    if rc == ffi::SQLITE_OK {
        Ok(NAME)
    } else {
        Err(rc)
    }
}

/// An open WAL file: SQLite's file header (pointing at [`METHODS`]), the bytes gathered, and the
/// default VFS's own file object right after this struct.
#[repr(C)]
struct WalFile {
    base: ffi::sqlite3_file,
    /// Where in the file `pending` goes.
    start: i64,
    /// One contiguous run of writes not yet handed to the file below.
    pending: Vec<u8>,
    /// Writes handed to the file below, for tests.
    writes: u64,
}

/// The methods of a WAL file opened through the layer.
static METHODS: ffi::sqlite3_io_methods = ffi::sqlite3_io_methods {
    iVersion: 3,
    xClose: Some(close),
    xRead: Some(read),
    xWrite: Some(write),
    xTruncate: Some(truncate),
    xSync: Some(sync),
    xFileSize: Some(file_size),
    xLock: Some(lock),
    xUnlock: Some(unlock),
    xCheckReservedLock: Some(check_reserved_lock),
    xFileControl: Some(file_control),
    xSectorSize: Some(sector_size),
    xDeviceCharacteristics: Some(device_characteristics),
    xShmMap: Some(shm_map),
    xShmLock: Some(shm_lock),
    xShmBarrier: Some(shm_barrier),
    xShmUnmap: Some(shm_unmap),
    xFetch: Some(fetch),
    xUnfetch: Some(unfetch),
};

/// The default VFS's file object inside one of ours.
///
/// # Safety
/// `file` was allocated by SQLite with this VFS's `szOsFile`.
unsafe fn below(file: *mut ffi::sqlite3_file) -> *mut ffi::sqlite3_file {
    // SAFETY: the allocation is `size_of::<WalFile>()` plus the default VFS's file size.
    unsafe { file.cast::<u8>().add(std::mem::size_of::<WalFile>()).cast() }
}

/// The methods of the default VFS's file object.
///
/// # Safety
/// `file` is an open file of the default VFS.
unsafe fn methods<'a>(file: *mut ffi::sqlite3_file) -> &'a ffi::sqlite3_io_methods {
    // SAFETY: an open file's methods stay valid until it is closed.
    unsafe { &*(*file).pMethods }
}

unsafe extern "C" fn open(
    _vfs: *mut ffi::sqlite3_vfs,
    name: *const c_char,
    file: *mut ffi::sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    let vfs = BELOW.load(Ordering::Acquire);
    // SAFETY: registration stored the default VFS before this VFS could be opened; `file` is
    // `szOsFile` bytes, enough for either layout.
    unsafe {
        let Some(open_below) = (*vfs).xOpen else {
            return ffi::SQLITE_CANTOPEN;
        };
        if flags & ffi::SQLITE_OPEN_WAL == 0 {
            return open_below(vfs, name, file, flags, out_flags);
        }
        let inner = below(file);
        (*inner).pMethods = ptr::null();
        let rc = open_below(vfs, name, inner, flags, out_flags);
        if rc != ffi::SQLITE_OK || (*inner).pMethods.is_null() {
            if !(*inner).pMethods.is_null()
                && let Some(close_below) = methods(inner).xClose
            {
                close_below(inner);
            }
            (*file).pMethods = ptr::null();
            return if rc == ffi::SQLITE_OK {
                ffi::SQLITE_CANTOPEN
            } else {
                rc
            };
        }
        ptr::write(
            file.cast::<WalFile>(),
            WalFile {
                base: ffi::sqlite3_file { pMethods: &METHODS },
                start: 0,
                pending: Vec::new(),
                writes: 0,
            },
        );
        ffi::SQLITE_OK
    }
}

/// Hands the gathered bytes to the file below.
///
/// # Safety
/// `file` is an open WAL file of this layer.
unsafe fn flush(file: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: per the contract, `file` holds an initialised `WalFile` and an open file below.
    unsafe {
        let wal = &mut *file.cast::<WalFile>();
        if wal.pending.is_empty() {
            return ffi::SQLITE_OK;
        }
        let inner = below(file);
        let Some(write_below) = methods(inner).xWrite else {
            return ffi::SQLITE_IOERR_WRITE;
        };
        // At most `BUFFER` bytes, which fits.
        let len = c_int::try_from(wal.pending.len()).unwrap_or(c_int::MAX);
        let rc = write_below(inner, wal.pending.as_ptr().cast(), len, wal.start);
        wal.writes += 1;
        // Dropped on failure too: SQLite rolls the transaction back and writes again what it
        // needs; holding bytes that failed to write would only repeat the failure at the next call.
        wal.pending.clear();
        rc
    }
}

/// Writes out the gathered bytes, then runs `then` on the file below.
///
/// # Safety
/// `file` is an open WAL file of this layer.
unsafe fn flushed(
    file: *mut ffi::sqlite3_file,
    then: impl FnOnce(*mut ffi::sqlite3_file, &ffi::sqlite3_io_methods) -> c_int,
) -> c_int {
    // SAFETY: per the contract.
    unsafe {
        let rc = flush(file);
        if rc != ffi::SQLITE_OK {
            return rc;
        }
        let inner = below(file);
        then(inner, methods(inner))
    }
}

unsafe extern "C" fn close(file: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: SQLite closes an open file once; the `WalFile` is dropped after its last use.
    unsafe {
        let flushed_rc = flush(file);
        let inner = below(file);
        let rc = match methods(inner).xClose {
            Some(close_below) => close_below(inner),
            None => ffi::SQLITE_OK,
        };
        ptr::drop_in_place(file.cast::<WalFile>());
        (*file).pMethods = ptr::null();
        if flushed_rc != ffi::SQLITE_OK {
            flushed_rc
        } else {
            rc
        }
    }
}

unsafe extern "C" fn write(
    file: *mut ffi::sqlite3_file,
    data: *const c_void,
    amount: c_int,
    offset: i64,
) -> c_int {
    let Ok(len) = usize::try_from(amount) else {
        return ffi::SQLITE_IOERR_WRITE;
    };
    // SAFETY: SQLite passes an open file of this layer and `amount` readable bytes at `data`. No
    // reference to the `WalFile` is held across `flush`, which takes its own.
    unsafe {
        let wal = file.cast::<WalFile>();
        let held = (*wal).pending.len();
        let appends = held > 0 && offset == (*wal).start.saturating_add(held as i64);
        if !(appends && held + len <= BUFFER) {
            let rc = flush(file);
            if rc != ffi::SQLITE_OK {
                return rc;
            }
            if len > BUFFER {
                let inner = below(file);
                return match methods(inner).xWrite {
                    Some(write_below) => {
                        (*wal).writes += 1;
                        write_below(inner, data, amount, offset)
                    }
                    None => ffi::SQLITE_IOERR_WRITE,
                };
            }
            (*wal).start = offset;
        }
        (*wal)
            .pending
            .extend_from_slice(std::slice::from_raw_parts(data.cast::<u8>(), len));
        ffi::SQLITE_OK
    }
}

unsafe extern "C" fn read(
    file: *mut ffi::sqlite3_file,
    data: *mut c_void,
    amount: c_int,
    offset: i64,
) -> c_int {
    // SAFETY: SQLite passes an open file of this layer.
    unsafe {
        flushed(file, |inner, m| match m.xRead {
            Some(f) => f(inner, data, amount, offset),
            None => ffi::SQLITE_IOERR_READ,
        })
    }
}

unsafe extern "C" fn truncate(file: *mut ffi::sqlite3_file, size: i64) -> c_int {
    // SAFETY: as for `read`.
    unsafe {
        flushed(file, |inner, m| match m.xTruncate {
            Some(f) => f(inner, size),
            None => ffi::SQLITE_IOERR_TRUNCATE,
        })
    }
}

unsafe extern "C" fn sync(file: *mut ffi::sqlite3_file, flags: c_int) -> c_int {
    // SAFETY: as for `read`.
    unsafe {
        flushed(file, |inner, m| match m.xSync {
            Some(f) => f(inner, flags),
            None => ffi::SQLITE_IOERR_FSYNC,
        })
    }
}

unsafe extern "C" fn file_size(file: *mut ffi::sqlite3_file, size: *mut i64) -> c_int {
    // SAFETY: as for `read`.
    unsafe {
        flushed(file, |inner, m| match m.xFileSize {
            Some(f) => f(inner, size),
            None => ffi::SQLITE_IOERR_FSTAT,
        })
    }
}

unsafe extern "C" fn lock(file: *mut ffi::sqlite3_file, level: c_int) -> c_int {
    // SAFETY: as for `read`.
    unsafe {
        flushed(file, |inner, m| match m.xLock {
            Some(f) => f(inner, level),
            None => ffi::SQLITE_IOERR_LOCK,
        })
    }
}

unsafe extern "C" fn unlock(file: *mut ffi::sqlite3_file, level: c_int) -> c_int {
    // SAFETY: as for `read`.
    unsafe {
        flushed(file, |inner, m| match m.xUnlock {
            Some(f) => f(inner, level),
            None => ffi::SQLITE_IOERR_UNLOCK,
        })
    }
}

unsafe extern "C" fn check_reserved_lock(file: *mut ffi::sqlite3_file, out: *mut c_int) -> c_int {
    // SAFETY: as for `read`.
    unsafe {
        flushed(file, |inner, m| match m.xCheckReservedLock {
            Some(f) => f(inner, out),
            None => ffi::SQLITE_IOERR_CHECKRESERVEDLOCK,
        })
    }
}

unsafe extern "C" fn file_control(
    file: *mut ffi::sqlite3_file,
    op: c_int,
    arg: *mut c_void,
) -> c_int {
    // SAFETY: as for `read`.
    unsafe {
        flushed(file, |inner, m| match m.xFileControl {
            Some(f) => f(inner, op, arg),
            None => ffi::SQLITE_NOTFOUND,
        })
    }
}

unsafe extern "C" fn sector_size(file: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: SQLite passes an open file of this layer.
    unsafe {
        let inner = below(file);
        methods(inner).xSectorSize.map_or(4096, |f| f(inner))
    }
}

unsafe extern "C" fn device_characteristics(file: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: as for `sector_size`.
    unsafe {
        let inner = below(file);
        methods(inner)
            .xDeviceCharacteristics
            .map_or(0, |f| f(inner))
    }
}

// SQLite maps shared memory and memory-maps through the database file, never through the WAL;
// these only pass the calls on.

unsafe extern "C" fn shm_map(
    file: *mut ffi::sqlite3_file,
    region: c_int,
    size: c_int,
    extend: c_int,
    out: *mut *mut c_void,
) -> c_int {
    // SAFETY: as for `read`.
    unsafe {
        flushed(file, |inner, m| match m.xShmMap {
            Some(f) => f(inner, region, size, extend, out),
            None => ffi::SQLITE_IOERR_SHMMAP,
        })
    }
}

unsafe extern "C" fn shm_lock(
    file: *mut ffi::sqlite3_file,
    offset: c_int,
    n: c_int,
    flags: c_int,
) -> c_int {
    // SAFETY: as for `read`.
    unsafe {
        flushed(file, |inner, m| match m.xShmLock {
            Some(f) => f(inner, offset, n, flags),
            None => ffi::SQLITE_IOERR_SHMLOCK,
        })
    }
}

unsafe extern "C" fn shm_barrier(file: *mut ffi::sqlite3_file) {
    // SAFETY: as for `sector_size`.
    unsafe {
        let inner = below(file);
        if let Some(f) = methods(inner).xShmBarrier {
            f(inner);
        }
    }
}

unsafe extern "C" fn shm_unmap(file: *mut ffi::sqlite3_file, delete: c_int) -> c_int {
    // SAFETY: as for `read`.
    unsafe {
        flushed(file, |inner, m| match m.xShmUnmap {
            Some(f) => f(inner, delete),
            None => ffi::SQLITE_OK,
        })
    }
}

unsafe extern "C" fn fetch(
    file: *mut ffi::sqlite3_file,
    offset: i64,
    amount: c_int,
    out: *mut *mut c_void,
) -> c_int {
    // SAFETY: as for `read`. Without a mapping, `*out` stays null and SQLite reads instead.
    unsafe {
        flushed(file, |inner, m| match m.xFetch {
            Some(f) => f(inner, offset, amount, out),
            None => {
                *out = ptr::null_mut();
                ffi::SQLITE_OK
            }
        })
    }
}

unsafe extern "C" fn unfetch(
    file: *mut ffi::sqlite3_file,
    offset: i64,
    page: *mut c_void,
) -> c_int {
    // SAFETY: as for `sector_size`.
    unsafe {
        let inner = below(file);
        match methods(inner).xUnfetch {
            Some(f) => f(inner, offset, page),
            None => ffi::SQLITE_OK,
        }
    }
}

/// How many writes `conn`'s WAL has handed to the file below, if it was opened through this layer
/// (for tests).
#[cfg(test)]
pub(super) fn writes_below(conn: &rusqlite::Connection) -> Option<u64> {
    let mut wal: *mut ffi::sqlite3_file = ptr::null_mut();
    // SAFETY: SQLITE_FCNTL_JOURNAL_POINTER stores the journal's (here the WAL's) file object, which
    // stays open while the connection does, in `wal`.
    unsafe {
        let rc = ffi::sqlite3_file_control(
            conn.handle(),
            c"main".as_ptr(),
            ffi::SQLITE_FCNTL_JOURNAL_POINTER,
            (&raw mut wal).cast(),
        );
        if rc != ffi::SQLITE_OK || wal.is_null() || !ptr::eq((*wal).pMethods, &METHODS) {
            return None;
        }
        Some((*wal.cast::<WalFile>()).writes)
    }
}

#[cfg(test)]
mod tests {
    use super::super::schema::connect;
    use super::*;

    /// Rows that dirty many pages: random-looking keys in an index, as the store's CIDs are.
    fn insert(conn: &rusqlite::Connection, from: u64, rows: u64) {
        conn.execute_batch("BEGIN IMMEDIATE").unwrap();
        for n in from..from + rows {
            let key = crate::ipld::cid_for(crate::ipld::RAW, &n.to_be_bytes()).to_bytes();
            conn.execute(
                "INSERT INTO t (k, v) VALUES (?1, ?2)",
                rusqlite::params![key, vec![n as u8; 700]],
            )
            .unwrap();
        }
        conn.execute_batch("COMMIT").unwrap();
    }

    /// A commit's frames reach the WAL in a few writes instead of two per page, and everything
    /// committed is in the file for a connection that does not go through the layer, also after
    /// the WAL starts over.
    #[test]
    fn commits_reach_the_file_in_a_few_writes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let writer = connect(&path, true).unwrap();
        writer
            .execute_batch(
                "CREATE TABLE t (k BLOB PRIMARY KEY, v BLOB NOT NULL) WITHOUT ROWID;
                 CREATE INDEX t_v ON t (v);",
            )
            .unwrap();
        let reader = connect(&path, false).unwrap();
        let count = |conn: &rusqlite::Connection| -> u64 {
            conn.query_row("SELECT count(*) FROM t", [], |r| r.get(0))
                .unwrap()
        };

        let before = writes_below(&writer).expect("the writer's WAL goes through the layer");
        let frames_before: i64 = writer
            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get(1))
            .unwrap();
        insert(&writer, 0, 200);
        let after = writes_below(&writer).unwrap();
        let frames: i64 = writer
            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get(1))
            .unwrap();
        let written = frames - frames_before;
        assert!(written > 200, "the commit wrote {written} frames");
        // Each frame is 1 KiB plus its header; the writes are of up to `BUFFER` bytes.
        let bound = (written as u64 * 1048).div_ceil(BUFFER as u64) + 2;
        assert!(
            after - before <= bound,
            "{written} frames took {} writes (at most {bound} expected)",
            after - before
        );
        assert_eq!(count(&reader), 200);
        assert!(
            writes_below(&reader).is_none(),
            "readers use the default VFS"
        );

        // The WAL starts over once every frame is copied; later commits overwrite it from the start.
        writer
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
                r.get::<_, i64>(0)
            })
            .unwrap();
        insert(&writer, 200, 50);
        insert(&writer, 250, 50);
        assert_eq!(count(&reader), 300);
        drop(writer);
        let reopened = connect(&path, false).unwrap();
        assert_eq!(count(&reopened), 300);
        let check: String = reopened
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(check, "ok");
    }
}
