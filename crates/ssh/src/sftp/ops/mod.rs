//! The operations layer: every SFTP request [`SftpClient`] offers, grouped by kind,
//! on top of the transport's `send`/`enqueue`.
//!
//! This file holds what they share: building a request packet (with the id
//! placeholder the transport fills in) and checking that a reply is of the kind the
//! request calls for, turning an error status into its [`SftpError`] variant.

mod attrs;
mod dirs;
mod extensions;
mod files;
mod links;
mod whole;

use super::error::{SftpError, SftpResult, Subject};
use super::proto::{self, Decoder, Encoder};
use super::transport::{ReplyRx, Response};
use super::{DirEntry, FileAttrs, Handle, SftpClient};

impl SftpClient {
    /// Sends one request and waits for its reply (see the transport).
    async fn send(&self, pkt: Vec<u8>) -> SftpResult<Response> {
        self.inner.transport.send(pkt).await
    }

    /// Queues one request without waiting for its reply; requests queued by one task
    /// go on the wire in order (see the transport), which [`super::FileWriter`]
    /// relies on.
    pub(in crate::sftp) async fn enqueue(&self, pkt: Vec<u8>) -> SftpResult<ReplyRx> {
        self.inner.transport.enqueue(pkt).await
    }

    /// Waits for a queued request's reply and checks it is an OK status.
    pub(in crate::sftp) async fn reply_status(
        &self,
        rx: ReplyRx,
        op: &'static str,
        subject: Subject,
    ) -> SftpResult<()> {
        let r = self.inner.transport.reply(rx).await?;
        expect_status(r, op, subject)
    }

    /// Starts a request packet of type `kind` with room for `capacity` more bytes.
    fn request(kind: u8, capacity: usize) -> Encoder {
        let mut e = Encoder::new(kind, capacity + 4);
        e.u32(0); // request id, filled in by the transport
        e
    }

    /// Sends `pkt` and checks the reply is an OK status.
    async fn status(&self, pkt: Vec<u8>, op: &'static str, subject: Subject) -> SftpResult<()> {
        let r = self.send(pkt).await?;
        expect_status(r, op, subject)
    }

    /// A request whose only field is `path`, answered with a status.
    async fn path_status(&self, kind: u8, op: &'static str, path: &[u8]) -> SftpResult<()> {
        let mut e = Self::request(kind, path.len() + 4);
        e.string(path);
        self.status(e.finish(), op, Subject::one(path)).await
    }

    /// A request whose only field is `path`, answered with attributes.
    async fn path_attrs(&self, kind: u8, op: &'static str, path: &[u8]) -> SftpResult<FileAttrs> {
        let mut e = Self::request(kind, path.len() + 4);
        e.string(path);
        let r = self.send(e.finish()).await?;
        expect_attrs(r, op, Subject::one(path))
    }

    /// A request whose only field is `path`, answered with exactly one name.
    async fn path_name(&self, kind: u8, op: &'static str, path: &[u8]) -> SftpResult<Vec<u8>> {
        let mut e = Self::request(kind, path.len() + 4);
        e.string(path);
        let r = self.send(e.finish()).await?;
        let subject = Subject::one(path);
        match expect_names(r, op, subject.clone())? {
            Some(mut names) if names.len() == 1 => Ok(names.swap_remove(0).name),
            Some(names) => Err(SftpError::Protocol(format!(
                "{op} {subject}: expected one name, got {}",
                names.len()
            ))),
            None => Err(SftpError::UnexpectedEof { op, subject }),
        }
    }

    /// Sends `pkt` (an OPEN or OPENDIR of `path`) and returns the handle it yields.
    async fn handle_request(
        &self,
        pkt: Vec<u8>,
        op: &'static str,
        path: &[u8],
    ) -> SftpResult<Handle> {
        let r = self.send(pkt).await?;
        if r.kind == proto::FXP_HANDLE {
            let mut d = Decoder::new(&r.data[5..], "HANDLE");
            let raw = d.string()?.to_vec();
            return Ok(Handle::from_raw(raw, path.to_vec()));
        }
        Err(unexpected(r, op, Subject::one(path), "HANDLE"))
    }
}

/// The code of a STATUS reply.
fn status_code(r: &Response) -> SftpResult<u32> {
    Decoder::new(&r.data[5..], "STATUS").u32()
}

/// Turns a reply of the wrong kind into an error: an error status into its variant,
/// anything else into a protocol error.
fn unexpected(r: Response, op: &'static str, subject: Subject, wanted: &str) -> SftpError {
    if r.kind == proto::FXP_STATUS {
        let mut d = Decoder::new(&r.data[5..], "STATUS");
        let code = match d.u32() {
            Ok(c) => c,
            Err(e) => return e,
        };
        // OpenSSH always sends message and language; tolerate servers that omit them.
        let message = d.string().unwrap_or(b"").to_vec();
        if code == proto::FX_OK {
            return SftpError::Protocol(format!(
                "{op} {subject}: OK status where a {wanted} reply was due"
            ));
        }
        return SftpError::from_status(code, &message, op, subject);
    }
    SftpError::Protocol(format!(
        "{op} {subject}: reply of type {} where {wanted} was due",
        r.kind
    ))
}

/// Checks a reply is an OK status.
fn expect_status(r: Response, op: &'static str, subject: Subject) -> SftpResult<()> {
    if r.kind == proto::FXP_STATUS && status_code(&r)? == proto::FX_OK {
        return Ok(());
    }
    Err(unexpected(r, op, subject, "STATUS"))
}

/// Decodes an ATTRS reply.
fn expect_attrs(r: Response, op: &'static str, subject: Subject) -> SftpResult<FileAttrs> {
    if r.kind == proto::FXP_ATTRS {
        return Decoder::new(&r.data[5..], "ATTRS").attrs();
    }
    Err(unexpected(r, op, subject, "ATTRS"))
}

/// Decodes a NAME reply; `None` for an EOF status (the end of a listing).
fn expect_names(
    r: Response,
    op: &'static str,
    subject: Subject,
) -> SftpResult<Option<Vec<DirEntry>>> {
    match r.kind {
        proto::FXP_NAME => {
            let mut d = Decoder::new(&r.data[5..], "NAME");
            let count = d.u32()?;
            // Each entry takes at least 12 bytes, which bounds a hostile count.
            let mut names = Vec::with_capacity((count as usize).min(d.rest().len() / 12));
            for _ in 0..count {
                let name = d.string()?.to_vec();
                let longname = d.string()?.to_vec();
                let attrs = d.attrs()?;
                names.push(DirEntry {
                    name,
                    longname,
                    attrs,
                });
            }
            Ok(Some(names))
        }
        proto::FXP_STATUS if status_code(&r)? == proto::FX_EOF => Ok(None),
        _ => Err(unexpected(r, op, subject, "NAME")),
    }
}
