//! Wire format of SFTP version 3 (draft-ietf-secsh-filexfer-02) and the OpenSSH
//! extensions relstore uses.
//!
//! Everything that is a path, a file name or a handle stays `&[u8]` / `Vec<u8>` here:
//! SFTP v3 strings are byte strings, and a lossy conversion anywhere would corrupt
//! non-UTF-8 names or handles (the two defects that made relstore leave russh-sftp).

use super::error::SftpError;

/// The protocol version this client speaks.
pub const SFTP_VERSION: u32 = 3;

// Packet types (draft-ietf-secsh-filexfer-02, section 3).
pub const FXP_INIT: u8 = 1;
pub const FXP_VERSION: u8 = 2;
pub const FXP_OPEN: u8 = 3;
pub const FXP_CLOSE: u8 = 4;
pub const FXP_READ: u8 = 5;
pub const FXP_WRITE: u8 = 6;
pub const FXP_LSTAT: u8 = 7;
pub const FXP_FSTAT: u8 = 8;
pub const FXP_SETSTAT: u8 = 9;
pub const FXP_FSETSTAT: u8 = 10;
pub const FXP_OPENDIR: u8 = 11;
pub const FXP_READDIR: u8 = 12;
pub const FXP_REMOVE: u8 = 13;
pub const FXP_MKDIR: u8 = 14;
pub const FXP_RMDIR: u8 = 15;
pub const FXP_REALPATH: u8 = 16;
pub const FXP_STAT: u8 = 17;
pub const FXP_RENAME: u8 = 18;
pub const FXP_READLINK: u8 = 19;
pub const FXP_SYMLINK: u8 = 20;
pub const FXP_STATUS: u8 = 101;
pub const FXP_HANDLE: u8 = 102;
pub const FXP_DATA: u8 = 103;
pub const FXP_NAME: u8 = 104;
pub const FXP_ATTRS: u8 = 105;
pub const FXP_EXTENDED: u8 = 200;
pub const FXP_EXTENDED_REPLY: u8 = 201;

// Status codes (what `SftpError::status_code` returns).
pub const FX_OK: u32 = 0;
pub const FX_EOF: u32 = 1;
pub const FX_NO_SUCH_FILE: u32 = 2;
pub const FX_PERMISSION_DENIED: u32 = 3;
pub const FX_FAILURE: u32 = 4;
pub const FX_BAD_MESSAGE: u32 = 5;
pub const FX_NO_CONNECTION: u32 = 6;
pub const FX_CONNECTION_LOST: u32 = 7;
pub const FX_OP_UNSUPPORTED: u32 = 8;

// Attribute flags.
const ATTR_SIZE: u32 = 0x0000_0001;
const ATTR_UIDGID: u32 = 0x0000_0002;
const ATTR_PERMISSIONS: u32 = 0x0000_0004;
const ATTR_ACMODTIME: u32 = 0x0000_0008;
const ATTR_EXTENDED: u32 = 0x8000_0000;

/// Largest packet accepted from the server, counted without the 4-byte length field.
/// OpenSSH's own client and server use the same limit (`SFTP_MAX_MSG_LENGTH`); a
/// larger length is a corrupt or hostile stream, refused before allocating.
pub const MAX_INCOMING_PACKET: u32 = 256 * 1024;

/// Bytes of a WRITE packet that are not data, without the handle: length, type, id,
/// handle length, offset, data length.
pub const WRITE_OVERHEAD: usize = 4 + 1 + 4 + 4 + 8 + 4;

/// Flags of SSH_FXP_OPEN (`pflags`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct OpenFlags(u32);

impl OpenFlags {
    /// Open for reading.
    pub const READ: OpenFlags = OpenFlags(0x01);
    /// Open for writing.
    pub const WRITE: OpenFlags = OpenFlags(0x02);
    /// Writes append (OpenSSH maps it to `O_APPEND`).
    pub const APPEND: OpenFlags = OpenFlags(0x04);
    /// Create the file if it does not exist (`O_CREAT`).
    pub const CREAT: OpenFlags = OpenFlags(0x08);
    /// Truncate an existing file (`O_TRUNC`).
    pub const TRUNC: OpenFlags = OpenFlags(0x10);
    /// Fail if the file exists (`O_EXCL`; only together with `CREAT`).
    pub const EXCL: OpenFlags = OpenFlags(0x20);

    /// The wire value.
    pub fn bits(self) -> u32 {
        self.0
    }

    /// Whether every flag of `other` is set.
    pub fn contains(self, other: OpenFlags) -> bool {
        self.0 & other.0 == other.0
    }
}

impl std::ops::BitOr for OpenFlags {
    type Output = OpenFlags;
    fn bitor(self, rhs: OpenFlags) -> OpenFlags {
        OpenFlags(self.0 | rhs.0)
    }
}

impl std::ops::BitOrAssign for OpenFlags {
    fn bitor_assign(&mut self, rhs: OpenFlags) {
        self.0 |= rhs.0;
    }
}

/// What kind of file a set of attributes describes (from the `S_IFMT` bits of the
/// permissions field, which OpenSSH always sends for stat results).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FileKind {
    File,
    Dir,
    Symlink,
    /// A fifo, socket or device.
    Other,
}

/// SFTP v3 file attributes. Every field is optional on the wire; OpenSSH fills all of
/// size, uid/gid, permissions (with the file type bits) and times for stat results.
/// Inode numbers are not part of SFTP v3.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FileAttrs {
    pub size: Option<u64>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    /// `st_mode`: file type bits and permission bits.
    pub permissions: Option<u32>,
    pub atime: Option<u32>,
    pub mtime: Option<u32>,
    /// Extended attributes as (type, data) pairs.
    pub extended: Vec<(Vec<u8>, Vec<u8>)>,
}

impl FileAttrs {
    /// Attributes that set only the permission bits (for open, mkdir, setstat).
    pub fn with_permissions(mode: u32) -> FileAttrs {
        FileAttrs {
            permissions: Some(mode),
            ..FileAttrs::default()
        }
    }

    /// The file kind, when the server sent the permissions field.
    pub fn kind(&self) -> Option<FileKind> {
        const S_IFMT: u32 = 0o170000;
        self.permissions.map(|p| match p & S_IFMT {
            0o100000 => FileKind::File,
            0o040000 => FileKind::Dir,
            0o120000 => FileKind::Symlink,
            _ => FileKind::Other,
        })
    }

    /// The permission bits (`mode & 0o7777`), when sent.
    pub fn mode(&self) -> Option<u32> {
        self.permissions.map(|p| p & 0o7777)
    }

    pub fn is_dir(&self) -> bool {
        self.kind() == Some(FileKind::Dir)
    }

    pub fn is_file(&self) -> bool {
        self.kind() == Some(FileKind::File)
    }

    pub fn is_symlink(&self) -> bool {
        self.kind() == Some(FileKind::Symlink)
    }
}

/// One entry of a directory listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirEntry {
    /// The file name exactly as the server's file system has it.
    pub name: Vec<u8>,
    /// The `ls -l`-style line OpenSSH adds (informational only).
    pub longname: Vec<u8>,
    pub attrs: FileAttrs,
}

/// Result of `statvfs@openssh.com`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StatVfs {
    pub bsize: u64,
    pub frsize: u64,
    pub blocks: u64,
    pub bfree: u64,
    pub bavail: u64,
    pub files: u64,
    pub ffree: u64,
    pub favail: u64,
    pub fsid: u64,
    pub flag: u64,
    pub namemax: u64,
}

/// Builds one outgoing packet: `uint32 length` is reserved up front and filled in by
/// [`Encoder::finish`].
pub struct Encoder {
    buf: Vec<u8>,
}

impl Encoder {
    /// Starts a packet of type `kind`. Request packets continue with the request id.
    pub fn new(kind: u8, capacity: usize) -> Encoder {
        let mut buf = Vec::with_capacity(capacity + 9);
        buf.extend_from_slice(&[0, 0, 0, 0, kind]);
        Encoder { buf }
    }

    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }

    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }

    /// An SSH string: `uint32 length` then the bytes. Lengths beyond `u32` cannot
    /// happen here: callers never pass more than a packet's worth.
    pub fn string(&mut self, v: &[u8]) -> &mut Self {
        self.u32(v.len() as u32);
        self.buf.extend_from_slice(v);
        self
    }

    /// Bytes appended as they are (an already encoded payload).
    pub fn raw(&mut self, v: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(v);
        self
    }

    pub fn attrs(&mut self, a: &FileAttrs) -> &mut Self {
        let mut flags = 0;
        if a.size.is_some() {
            flags |= ATTR_SIZE;
        }
        if a.uid.is_some() || a.gid.is_some() {
            flags |= ATTR_UIDGID;
        }
        if a.permissions.is_some() {
            flags |= ATTR_PERMISSIONS;
        }
        if a.atime.is_some() || a.mtime.is_some() {
            flags |= ATTR_ACMODTIME;
        }
        if !a.extended.is_empty() {
            flags |= ATTR_EXTENDED;
        }
        self.u32(flags);
        if let Some(size) = a.size {
            self.u64(size);
        }
        if flags & ATTR_UIDGID != 0 {
            // SFTP v3 sends both or neither; an unset half goes out as -1, which
            // chown(2) (what OpenSSH calls) reads as "leave unchanged".
            self.u32(a.uid.unwrap_or(u32::MAX));
            self.u32(a.gid.unwrap_or(u32::MAX));
        }
        if let Some(p) = a.permissions {
            self.u32(p);
        }
        if flags & ATTR_ACMODTIME != 0 {
            self.u32(a.atime.or(a.mtime).unwrap_or(0));
            self.u32(a.mtime.or(a.atime).unwrap_or(0));
        }
        if !a.extended.is_empty() {
            self.u32(a.extended.len() as u32);
            for (k, v) in &a.extended {
                self.string(k);
                self.string(v);
            }
        }
        self
    }

    /// Fills in the length and returns the packet bytes.
    pub fn finish(mut self) -> Vec<u8> {
        let len = (self.buf.len() - 4) as u32;
        self.buf[..4].copy_from_slice(&len.to_be_bytes());
        self.buf
    }
}

/// Reads fields of one incoming packet body; every read is bounds-checked, so a short
/// or garbled packet becomes [`SftpError::Protocol`], never a panic.
pub struct Decoder<'a> {
    buf: &'a [u8],
    what: &'static str,
}

impl<'a> Decoder<'a> {
    /// `what` names the packet for error messages.
    pub fn new(buf: &'a [u8], what: &'static str) -> Decoder<'a> {
        Decoder { buf, what }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], SftpError> {
        if self.buf.len() < n {
            return Err(SftpError::Protocol(format!(
                "truncated {} packet (needed {n} more bytes, {} left)",
                self.what,
                self.buf.len()
            )));
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    pub fn u8(&mut self) -> Result<u8, SftpError> {
        Ok(self.take(1)?[0])
    }

    pub fn u32(&mut self) -> Result<u32, SftpError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub fn u64(&mut self) -> Result<u64, SftpError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }

    pub fn string(&mut self) -> Result<&'a [u8], SftpError> {
        let n = self.u32()? as usize;
        self.take(n)
    }

    pub fn attrs(&mut self) -> Result<FileAttrs, SftpError> {
        let flags = self.u32()?;
        let mut a = FileAttrs::default();
        if flags & ATTR_SIZE != 0 {
            a.size = Some(self.u64()?);
        }
        if flags & ATTR_UIDGID != 0 {
            a.uid = Some(self.u32()?);
            a.gid = Some(self.u32()?);
        }
        if flags & ATTR_PERMISSIONS != 0 {
            a.permissions = Some(self.u32()?);
        }
        if flags & ATTR_ACMODTIME != 0 {
            a.atime = Some(self.u32()?);
            a.mtime = Some(self.u32()?);
        }
        if flags & ATTR_EXTENDED != 0 {
            let count = self.u32()?;
            for _ in 0..count {
                // Each pair needs at least 8 bytes, so a huge count on a short packet
                // fails on the first missing pair instead of allocating.
                let k = self.string()?.to_vec();
                let v = self.string()?.to_vec();
                a.extended.push((k, v));
            }
        }
        Ok(a)
    }

    /// Bytes not read yet.
    pub fn rest(&self) -> &'a [u8] {
        self.buf
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
}

/// Shows raw path bytes losslessly for messages: valid UTF-8 as is (a backslash
/// doubled), every other byte as `\xNN` — the same convention as relstore-core's
/// `path::escape`, so a non-UTF-8 name in an SSH error reads like one anywhere else.
pub fn escape_bytes(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            if c == '\\' {
                s.push_str("\\\\");
            } else {
                s.push(c);
            }
        }
        for b in chunk.invalid() {
            s.push_str(&format!("\\x{b:02x}"));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attrs_round_trip() {
        let a = FileAttrs {
            size: Some(1 << 40),
            uid: Some(1000),
            gid: Some(100),
            permissions: Some(0o100644),
            atime: Some(5),
            mtime: Some(6),
            extended: vec![(b"k".to_vec(), b"\xff\x00".to_vec())],
        };
        let mut e = Encoder::new(FXP_ATTRS, 0);
        e.attrs(&a);
        let pkt = e.finish();
        assert_eq!(
            u32::from_be_bytes([pkt[0], pkt[1], pkt[2], pkt[3]]) as usize,
            pkt.len() - 4
        );
        let mut d = Decoder::new(&pkt[5..], "test");
        assert_eq!(d.attrs().expect("decodes"), a);
        assert!(d.is_empty());
        assert!(a.is_file());
        assert_eq!(a.mode(), Some(0o644));
    }

    #[test]
    fn truncated_and_hostile_input_is_an_error() {
        // A string claiming 4 GiB in a 6-byte buffer.
        let mut d = Decoder::new(&[0xff, 0xff, 0xff, 0xff, 1, 2], "test");
        assert!(matches!(d.string(), Err(SftpError::Protocol(_))));
        // Extended attrs with a huge count and no pairs.
        let mut d = Decoder::new(&[0x80, 0, 0, 0, 0xff, 0xff, 0xff, 0xff], "test");
        assert!(matches!(d.attrs(), Err(SftpError::Protocol(_))));
    }

    #[test]
    fn escaping() {
        assert_eq!(escape_bytes(b"caf\xe9 a\\b"), "caf\\xe9 a\\\\b");
        assert_eq!(escape_bytes("café".as_bytes()), "café");
    }
}
