//! This relstore as the helper of a store: uploaded over SFTP to
//! `ROOT/.relstore/bin/relstore-<version>-<hash>`, checked against its blake3 hash
//! after the upload and before every run.
//!
//! The name carries the version and the first 16 hex digits of the executable's
//! blake3 hash, so two builds never share a file. The upload goes to a temporary
//! name, is read back and hashed, gets mode 0755 and only then is renamed to its
//! final name. A later push checks the file again before running it: a full re-hash
//! over SFTP costs as much as reading the executable, so once a file has been hashed
//! its size and mtime are recorded next to it (`NAME.ok`); a file whose size or mtime
//! differs from the record is hashed again, and one whose hash differs is removed and
//! uploaded anew. A file that is not exactly this executable is never run. (The
//! record guards against partial uploads, corruption and replacement; someone able to
//! write into the store root with the same size and mtime could as well rewrite the
//! store itself.)

use std::io::Read;
use std::path::PathBuf;

use crate::sftp::{FileAttrs, OpenFlags, SftpClient, SftpError};

/// Where helpers live, relative to the store root.
pub const BIN_DIR: &str = ".relstore/bin";
/// Bytes read from the local executable per SFTP write batch.
const CHUNK: usize = 1 << 20;

/// This executable: what an uploaded helper must be byte for byte.
#[derive(Clone, Debug)]
pub struct LocalExe {
    /// Its path on this machine.
    pub path: PathBuf,
    /// Its size in bytes.
    pub size: u64,
    /// Its blake3 hash.
    pub hash: blake3::Hash,
}

impl LocalExe {
    /// The running executable, hashed.
    pub fn current() -> Result<LocalExe, String> {
        let path = std::env::current_exe()
            .map_err(|e| format!("cannot find this relstore's executable: {e}"))?;
        let mut hasher = blake3::Hasher::new();
        hasher
            .update_mmap_rayon(&path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let size = hasher.count();
        Ok(LocalExe {
            path,
            size,
            hash: hasher.finalize(),
        })
    }

    /// `relstore-<version>-<first 16 hex digits of the hash>`.
    pub fn file_name(&self) -> String {
        let hex = self.hash.to_hex();
        format!("relstore-{}-{}", env!("CARGO_PKG_VERSION"), &hex[..16])
    }
}

/// What was found at an installed helper's path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Installed {
    /// Nothing is there.
    Missing,
    /// This executable is there (hash checked now or recorded for this size and mtime).
    Verified,
    /// Something else is there; it must not be run.
    Different(String),
}

fn join(a: &[u8], b: &str) -> Vec<u8> {
    let mut p = a.to_vec();
    p.push(b'/');
    p.extend_from_slice(b.as_bytes());
    p
}

/// `ROOT/.relstore/bin`.
pub fn bin_dir(root: &[u8]) -> Vec<u8> {
    join(root, BIN_DIR)
}

/// `ROOT/.relstore/bin/NAME` of `exe`.
pub fn exe_path(root: &[u8], exe: &LocalExe) -> Vec<u8> {
    join(&bin_dir(root), &exe.file_name())
}

fn record_path(exe_path: &[u8]) -> Vec<u8> {
    let mut p = exe_path.to_vec();
    p.extend_from_slice(b".ok");
    p
}

fn record_of(attrs: &FileAttrs) -> String {
    format!(
        "size {} mtime {}\n",
        attrs.size.unwrap_or(0),
        attrs.mtime.unwrap_or(0)
    )
}

fn show(path: &[u8]) -> String {
    String::from_utf8_lossy(path).into_owned()
}

/// The blake3 hash and length of a remote file, read over SFTP.
async fn remote_hash(c: &SftpClient, path: &[u8]) -> Result<(blake3::Hash, u64), SftpError> {
    let h = c.open(path, OpenFlags::READ, &FileAttrs::default()).await?;
    let mut hasher = blake3::Hasher::new();
    let read = c.read_each(&h, |d| {
        hasher.update(d);
    });
    let n = read.await;
    let closed = c.close(&h).await;
    let n = n?;
    closed?;
    Ok((hasher.finalize(), n))
}

/// Checks the helper at `path` against `exe` (see the module docs).
pub async fn check(c: &SftpClient, path: &[u8], exe: &LocalExe) -> Result<Installed, String> {
    let attrs = match c.stat(path).await {
        Ok(a) => a,
        Err(e) if e.is_not_found() => return Ok(Installed::Missing),
        Err(e) => return Err(format!("cannot stat {}: {e}", show(path))),
    };
    if !attrs.is_file() || attrs.size != Some(exe.size) {
        return Ok(Installed::Different(format!(
            "{} is not this relstore (size {:?}, expected {})",
            show(path),
            attrs.size,
            exe.size
        )));
    }
    let record = record_path(path);
    let want = record_of(&attrs);
    if let Ok(seen) = c.read_file(&record).await {
        if seen == want.as_bytes() {
            return Ok(Installed::Verified);
        }
    }
    let (hash, len) = remote_hash(c, path)
        .await
        .map_err(|e| format!("cannot read {}: {e}", show(path)))?;
    if hash != exe.hash || len != exe.size {
        return Ok(Installed::Different(format!(
            "{} does not have this relstore's blake3 hash",
            show(path)
        )));
    }
    // The record is a cache: failing to write it only costs a re-hash next time.
    let _ = write_small(c, &record, want.as_bytes()).await;
    Ok(Installed::Verified)
}

/// Writes a small file atomically (temporary name, then rename over).
async fn write_small(c: &SftpClient, path: &[u8], data: &[u8]) -> Result<(), SftpError> {
    let mut tmp = path.to_vec();
    tmp.extend_from_slice(format!(".{}.tmp", std::process::id()).as_bytes());
    let _ = c.remove(&tmp).await;
    c.write_file(&tmp, data, 0o644, false).await?;
    match c.posix_rename(&tmp, path).await {
        Ok(()) => Ok(()),
        Err(e) => {
            let _ = c.remove(&tmp).await;
            Err(e)
        }
    }
}

/// `mkdir` that accepts an existing directory.
async fn mkdir_ok(c: &SftpClient, path: &[u8]) -> Result<(), String> {
    match c.mkdir(path, 0o755).await {
        Ok(()) => Ok(()),
        Err(e) => match c.stat(path).await {
            Ok(a) if a.is_dir() => Ok(()),
            _ => Err(format!("cannot create directory {}: {e}", show(path))),
        },
    }
}

/// Removes whatever is at the helper's path (and its record), so that it is uploaded
/// anew.
pub async fn remove(c: &SftpClient, path: &[u8]) -> Result<(), String> {
    let _ = c.remove(&record_path(path)).await;
    match c.remove(path).await {
        Ok(()) => Ok(()),
        Err(e) if e.is_not_found() => Ok(()),
        Err(e) => Err(format!("cannot remove {}: {e}", show(path))),
    }
}

/// Uploads `exe` to its place under `root` (which must be an existing store) and
/// checks it; returns its path on the server.
pub async fn upload(
    c: &SftpClient,
    root: &[u8],
    exe: &LocalExe,
    fsync: bool,
) -> Result<Vec<u8>, String> {
    let dot = join(root, ".relstore");
    mkdir_ok(c, &dot).await?;
    let dir = bin_dir(root);
    mkdir_ok(c, &dir).await?;
    let final_path = exe_path(root, exe);
    let tmp = join(
        &dir,
        &format!("{}.{}.tmp", exe.file_name(), std::process::id()),
    );
    let _ = c.remove(&tmp).await;
    let result = async {
        send_file(c, &tmp, exe, fsync).await?;
        let (hash, len) = remote_hash(c, &tmp)
            .await
            .map_err(|e| format!("cannot read back {}: {e}", show(&tmp)))?;
        if hash != exe.hash || len != exe.size {
            return Err(format!(
                "the uploaded {} does not have this relstore's hash (read back {len} bytes)",
                show(&tmp)
            ));
        }
        c.set_permissions(&tmp, 0o755)
            .await
            .map_err(|e| format!("cannot chmod {}: {e}", show(&tmp)))?;
        c.posix_rename(&tmp, &final_path)
            .await
            .map_err(|e| format!("cannot rename {} into place: {e}", show(&tmp)))
    }
    .await;
    if let Err(e) = result {
        let _ = c.remove(&tmp).await;
        return Err(e);
    }
    if let Ok(attrs) = c.stat(&final_path).await {
        let _ = write_small(c, &record_path(&final_path), record_of(&attrs).as_bytes()).await;
    }
    Ok(final_path)
}

/// Copies the local executable to `tmp` (created with mode 0700: nobody runs it
/// before it is checked).
async fn send_file(c: &SftpClient, tmp: &[u8], exe: &LocalExe, fsync: bool) -> Result<(), String> {
    let mut file = std::fs::File::open(&exe.path)
        .map_err(|e| format!("cannot open {}: {e}", exe.path.display()))?;
    let mut w = c
        .create_file(tmp, 0o700)
        .await
        .map_err(|e| format!("cannot create {}: {e}", show(tmp)))?;
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = file
            .read(&mut buf)
            .map_err(|e| format!("cannot read {}: {e}", exe.path.display()))?;
        if n == 0 {
            break;
        }
        w.write(&buf[..n])
            .await
            .map_err(|e| format!("cannot write {}: {e}", show(tmp)))?;
    }
    w.finish(fsync)
        .await
        .map(|_| ())
        .map_err(|e| format!("cannot write {}: {e}", show(tmp)))
}
