//! The few Linux calls the walk and the hasher need, as small safe wrappers.
//!
//! All of this crate's `unsafe` lives here. The walk works on directory file
//! descriptors (`openat`, `fstatat`, `readlinkat`, `getdents64`) rather than on full
//! paths, for two reasons:
//! - speed: the kernel resolves one name per call instead of the whole path, and
//!   directory entries are parsed straight out of a stack buffer without a
//!   per-entry allocation;
//! - safety: every subdirectory is opened with `O_NOFOLLOW` relative to its parent,
//!   so a directory swapped for a symlink during the walk is refused instead of
//!   followed out of the source tree.

use std::ffi::{CStr, CString};
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Opens the source root (following a symlink: the root may be one) as a directory.
pub(crate) fn open_dir(path: &Path) -> io::Result<OwnedFd> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))?;
    // SAFETY: `c` is a valid NUL-terminated string that outlives the call.
    let fd = unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    owned(fd)
}

/// Opens directory `name` inside `dir` without following a symlink.
pub(crate) fn open_dir_at(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<OwnedFd> {
    // SAFETY: `dir` is an open descriptor and `name` a valid C string for the call.
    let fd = unsafe {
        libc::openat(
            dir.as_raw_fd(),
            name.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )
    };
    owned(fd)
}

fn owned(fd: libc::c_int) -> io::Result<OwnedFd> {
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this descriptor and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `fstat` of an open descriptor.
pub(crate) fn fstat(fd: BorrowedFd<'_>) -> io::Result<libc::stat> {
    let mut st = MaybeUninit::<libc::stat>::uninit();
    // SAFETY: `st` is valid for writes of one `stat`; the kernel fills it on success.
    let rc = unsafe { libc::fstat(fd.as_raw_fd(), st.as_mut_ptr()) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fstat returned 0, so the struct is initialised.
    Ok(unsafe { st.assume_init() })
}

/// `lstat` of `name` inside `dir` (the entry itself, never a symlink's target).
pub(crate) fn lstat_at(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<libc::stat> {
    let mut st = MaybeUninit::<libc::stat>::uninit();
    // SAFETY: valid descriptor, C string and output buffer for the duration of the call.
    let rc = unsafe {
        libc::fstatat(
            dir.as_raw_fd(),
            name.as_ptr(),
            st.as_mut_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fstatat returned 0, so the struct is initialised.
    Ok(unsafe { st.assume_init() })
}

/// The raw target bytes of symlink `name` inside `dir`.
pub(crate) fn readlink_at(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; 256];
    loop {
        // SAFETY: `buf` is valid for writes of `buf.len()` bytes.
        let n = unsafe {
            libc::readlinkat(
                dir.as_raw_fd(),
                name.as_ptr(),
                buf.as_mut_ptr().cast(),
                buf.len(),
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let n = n as usize;
        // A full buffer may mean a truncated target: retry with more room.
        if n < buf.len() {
            buf.truncate(n);
            return Ok(buf);
        }
        if buf.len() > 64 * 1024 {
            return Err(io::Error::other("symlink target is implausibly long"));
        }
        buf.resize(buf.len() * 4, 0);
    }
}

/// Fills `buf` with the next batch of `linux_dirent64` records of `dir`; returns the
/// number of bytes filled, 0 at the end of the directory.
pub(crate) fn getdents(dir: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        // SAFETY: `buf` is valid for writes of `buf.len()` bytes; the kernel writes at
        // most that many.
        let n = unsafe {
            libc::syscall(
                libc::SYS_getdents64,
                dir.as_raw_fd(),
                buf.as_mut_ptr(),
                buf.len(),
            )
        };
        if n >= 0 {
            return Ok(n as usize);
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// Iterates the `(name, d_type)` pairs of a batch filled by [`getdents`], skipping
/// `.` and `..`. Parsing is bounds-checked: a malformed record ends the batch.
pub(crate) fn dirents(batch: &[u8]) -> impl Iterator<Item = (&CStr, u8)> {
    // struct linux_dirent64 { u64 d_ino; i64 d_off; u16 d_reclen; u8 d_type; char d_name[]; }
    const NAME_AT: usize = 19;
    let mut rest = batch;
    std::iter::from_fn(move || loop {
        if rest.len() < NAME_AT + 1 {
            return None;
        }
        let reclen = usize::from(u16::from_ne_bytes([rest[16], rest[17]]));
        if reclen <= NAME_AT || reclen > rest.len() {
            return None;
        }
        let d_type = rest[18];
        let record = &rest[NAME_AT..reclen];
        rest = &rest[reclen..];
        let name = CStr::from_bytes_until_nul(record).ok()?;
        if matches!(name.to_bytes(), b"." | b"..") {
            continue;
        }
        return Some((name, d_type));
    })
}

/// The clock the kernel stamps file times with (`CLOCK_REALTIME_COARSE`), in
/// nanoseconds since the epoch. See the stat cache's module doc for why this clock.
/// Returns 0 if the clock cannot be read, which makes no cache record trustworthy.
pub(crate) fn coarse_realtime_ns() -> i64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec for the kernel to fill.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_REALTIME_COARSE, &mut ts) };
    if rc != 0 {
        return 0;
    }
    timespec_ns(ts.tv_sec, ts.tv_nsec)
}

/// Seconds + nanoseconds as one i64 of nanoseconds (saturating past year 2262).
pub(crate) fn timespec_ns(sec: i64, nsec: i64) -> i64 {
    sec.saturating_mul(1_000_000_000).saturating_add(nsec)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn dirents_lists_names_and_skips_dots() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["a", "b.txt", "c"] {
            std::fs::write(dir.path().join(name), b"x").unwrap();
        }
        let fd = open_dir(dir.path()).unwrap();
        let mut buf = [0u8; 4096];
        let mut names = Vec::new();
        loop {
            let n = getdents(fd.as_fd(), &mut buf).unwrap();
            if n == 0 {
                break;
            }
            names.extend(dirents(&buf[..n]).map(|(n, _)| n.to_bytes().to_vec()));
        }
        names.sort();
        assert_eq!(names, vec![b"a".to_vec(), b"b.txt".to_vec(), b"c".to_vec()]);
    }

    #[test]
    fn malformed_batch_ends_iteration() {
        let mut bad = vec![0u8; 40];
        bad[16] = 0; // reclen 0 would loop forever if trusted
        assert_eq!(dirents(&bad).count(), 0);
    }

    #[test]
    fn long_symlink_target_is_read_whole() {
        let dir = tempfile::tempdir().unwrap();
        let target = "x/".repeat(600) + "end";
        std::os::unix::fs::symlink(&target, dir.path().join("l")).unwrap();
        let fd = open_dir(dir.path()).unwrap();
        let got = readlink_at(fd.as_fd(), c"l").unwrap();
        assert_eq!(got, target.as_bytes());
    }
}
