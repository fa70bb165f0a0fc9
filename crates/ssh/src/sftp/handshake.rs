//! The steps of starting a session, before the stream is handed to the transport
//! tasks: the `INIT`/`VERSION` exchange, asking `limits@openssh.com`, and clamping
//! those limits to what this client and its configuration allow. All of it is
//! sequential on the bare stream (request id 0 for the limits query).

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use super::error::{SftpError, SftpResult};
use super::proto::{self, Decoder, Encoder, MAX_INCOMING_PACKET};
use super::transport::read_packet;
use super::{Limits, SftpConfig, EXT_LIMITS};

/// Largest read/write payload a server without `limits@openssh.com` must accept
/// (the draft's minimum packet size is 34,000 bytes).
const FALLBACK_IO_LEN: u32 = 32 * 1024;

/// The draft's minimum packet size every server accepts.
const FALLBACK_PACKET_LEN: u32 = 34_000;

/// What the server said about itself in its `VERSION` reply.
pub(super) struct Hello {
    /// Always [`proto::SFTP_VERSION`] (anything else is refused).
    pub(super) version: u32,
    /// Extensions as (name, data), in the server's order.
    pub(super) extensions: Vec<(String, Vec<u8>)>,
}

impl Hello {
    fn offers(&self, name: &str) -> bool {
        self.extensions.iter().any(|(n, _)| n == name)
    }
}

fn handshake_io(context: &str) -> impl FnOnce(std::io::Error) -> SftpError + '_ {
    move |source| SftpError::Io {
        context: format!("SFTP handshake: {context}"),
        source,
    }
}

/// Writes one packet and flushes it; `context` names the step in errors.
async fn send_packet<S>(stream: &mut S, pkt: &[u8], context: &str) -> SftpResult<()>
where
    S: AsyncWrite + Unpin,
{
    stream.write_all(pkt).await.map_err(handshake_io(context))?;
    stream.flush().await.map_err(handshake_io(context))
}

/// Sends `INIT` and checks the server answers version 3; returns its extensions.
pub(super) async fn negotiate<S>(stream: &mut S) -> SftpResult<Hello>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut init = Encoder::new(proto::FXP_INIT, 4);
    init.u32(proto::SFTP_VERSION);
    send_packet(stream, &init.finish(), "sending INIT").await?;
    let reply = read_packet(stream).await?.ok_or_else(|| {
        SftpError::Closed(
            "the server closed the channel before answering INIT (is the sftp subsystem enabled?)"
                .into(),
        )
    })?;
    let mut d = Decoder::new(&reply, "VERSION");
    let kind = d.u8()?;
    if kind != proto::FXP_VERSION {
        return Err(SftpError::Protocol(format!(
            "expected VERSION in reply to INIT, got packet type {kind}"
        )));
    }
    let version = d.u32()?;
    if version != proto::SFTP_VERSION {
        return Err(SftpError::Protocol(format!(
            "the server speaks SFTP version {version}; this client speaks version 3"
        )));
    }
    let mut extensions = Vec::new();
    while !d.is_empty() {
        let name = String::from_utf8_lossy(d.string()?).into_owned();
        let data = d.string()?.to_vec();
        extensions.push((name, data));
    }
    Ok(Hello {
        version,
        extensions,
    })
}

/// The server's limits: asked with `limits@openssh.com` when offered, else the
/// draft's conservative minimums. Not yet clamped (see [`clamp_limits`]).
pub(super) async fn server_limits<S>(stream: &mut S, hello: &Hello) -> SftpResult<Limits>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut limits = Limits {
        max_packet_len: FALLBACK_PACKET_LEN,
        max_read_len: FALLBACK_IO_LEN,
        max_write_len: FALLBACK_IO_LEN,
        max_open_handles: None,
        from_server: false,
    };
    if !hello.offers(EXT_LIMITS) {
        return Ok(limits);
    }
    let mut e = Encoder::new(proto::FXP_EXTENDED, 32);
    e.u32(0).string(EXT_LIMITS.as_bytes());
    send_packet(stream, &e.finish(), "asking limits@openssh.com").await?;
    let reply = read_packet(stream).await?.ok_or_else(|| {
        SftpError::Closed("the server closed the channel during the handshake".into())
    })?;
    let mut d = Decoder::new(&reply, "limits@openssh.com reply");
    let (kind, id) = (d.u8()?, d.u32()?);
    if id != 0 {
        return Err(SftpError::Protocol(format!(
            "reply to request 0 carries id {id}"
        )));
    }
    // A status instead of the reply means "not really supported": keep defaults.
    if kind != proto::FXP_EXTENDED_REPLY {
        return Ok(limits);
    }
    let (packet, read, write, handles) = (d.u64()?, d.u64()?, d.u64()?, d.u64()?);
    // Zero means "no limit stated": keep the default.
    let pick = |v: u64, default: u32| {
        if v == 0 {
            default
        } else {
            v.min(u64::from(u32::MAX)) as u32
        }
    };
    limits.max_packet_len = pick(packet, limits.max_packet_len);
    limits.max_read_len = pick(read, limits.max_read_len);
    limits.max_write_len = pick(write, limits.max_write_len);
    limits.max_open_handles = (handles != 0).then_some(handles);
    limits.from_server = true;
    Ok(limits)
}

/// The limits this client applies: replies must fit our incoming limit; writes must
/// fit the server's packet limit with room for the header and a handle of up to 256
/// bytes (the draft's maximum), and the configured cap.
pub(super) fn clamp_limits(mut limits: Limits, config: &SftpConfig) -> Limits {
    limits.max_read_len = limits.max_read_len.min(MAX_INCOMING_PACKET - 9 - 4);
    limits.max_write_len = limits
        .max_write_len
        .min(
            limits
                .max_packet_len
                .saturating_sub(proto::WRITE_OVERHEAD as u32 + 256),
        )
        .max(1024);
    if let Some(cap) = config.max_write_len {
        limits.max_write_len = limits.max_write_len.min(cap.max(1));
    }
    limits
}
