//! Unit tests against a scripted in-memory server: the failure paths a real OpenSSH
//! server will not produce on demand (oversized packets, silence, hang-ups,
//! out-of-order replies, handle bytes ≥ 0x80).

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

use super::proto::{self, Decoder, Encoder};
use super::*;

async fn read_raw(s: &mut DuplexStream) -> Option<Vec<u8>> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len).await.ok()?;
    let mut buf = vec![0u8; u32::from_be_bytes(len) as usize];
    s.read_exact(&mut buf).await.ok()?;
    Some(buf)
}

fn status(id: u32, code: u32) -> Vec<u8> {
    let mut e = Encoder::new(proto::FXP_STATUS, 16);
    e.u32(id).u32(code).string(b"msg").string(b"");
    e.finish()
}

/// Starts a client against a server task that answers the handshake and then runs
/// `serve` on the server end.
async fn client_with<F, Fut>(config: SftpConfig, serve: F) -> SftpClient
where
    F: FnOnce(DuplexStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let (client_end, mut server_end) = tokio::io::duplex(1 << 20);
    tokio::spawn(async move {
        let init = read_raw(&mut server_end).await.expect("INIT");
        assert_eq!(init[0], proto::FXP_INIT);
        let mut v = Encoder::new(proto::FXP_VERSION, 64);
        v.u32(3).string(EXT_HARDLINK.as_bytes()).string(b"1");
        server_end.write_all(&v.finish()).await.expect("VERSION");
        serve(server_end).await;
    });
    SftpClient::new(client_end, config)
        .await
        .expect("handshake")
}

#[tokio::test]
async fn oversized_packet_fails_every_request_clearly() {
    let client = client_with(SftpConfig::default(), |mut s| async move {
        let _ = read_raw(&mut s).await;
        s.write_all(&(MAX_INCOMING_PACKET + 1).to_be_bytes())
            .await
            .expect("write");
        // Keep the stream open: the client must not wait for the body.
        tokio::time::sleep(Duration::from_secs(5)).await;
    })
    .await;
    let err = client.lstat(b"x").await.expect_err("must fail");
    assert!(
        matches!(err, SftpError::PacketTooLarge { len, .. } if len == MAX_INCOMING_PACKET + 1),
        "{err}"
    );
    assert!(err.to_string().contains("262145"), "{err}");
    let later = client.lstat(b"y").await.expect_err("session is dead");
    assert!(matches!(later, SftpError::PacketTooLarge { .. }), "{later}");
    assert!(client.is_closed());
}

#[tokio::test]
async fn hang_up_fails_outstanding_requests() {
    let client = client_with(SftpConfig::default(), |mut s| async move {
        let _ = read_raw(&mut s).await;
        drop(s);
    })
    .await;
    let err = client.stat(b"/a").await.expect_err("must fail");
    assert!(matches!(err, SftpError::Closed(_)), "{err}");
}

#[tokio::test]
async fn silence_with_requests_outstanding_times_out() {
    let config = SftpConfig {
        reply_timeout: Some(Duration::from_millis(300)),
        ..SftpConfig::default()
    };
    let client = client_with(config, |mut s| async move {
        while read_raw(&mut s).await.is_some() {}
    })
    .await;
    let started = std::time::Instant::now();
    let err = client.stat(b"/a").await.expect_err("must time out");
    assert!(matches!(err, SftpError::Timeout(_)), "{err}");
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn replies_out_of_order_reach_their_requests_and_high_handle_bytes_survive() {
    // Answers OPEN with a handle of non-UTF-8 bytes, checks WRITE carries it back
    // byte-exact, and answers a burst of LSTATs in reverse order with the size set to
    // the request id, so each caller can check it got its own reply.
    let client = client_with(SftpConfig::default(), |mut s| async move {
        let handle: &[u8] = b"\xff\x80\x00h";
        let mut lstats = Vec::new();
        while let Some(pkt) = read_raw(&mut s).await {
            let mut d = Decoder::new(&pkt, "req");
            let kind = d.u8().expect("type");
            let id = d.u32().expect("id");
            match kind {
                proto::FXP_OPEN => {
                    let mut e = Encoder::new(proto::FXP_HANDLE, 16);
                    e.u32(id).string(handle);
                    s.write_all(&e.finish()).await.expect("reply");
                }
                proto::FXP_WRITE => {
                    let got = d.string().expect("handle");
                    let code = if got == handle {
                        proto::FX_OK
                    } else {
                        proto::FX_FAILURE
                    };
                    s.write_all(&status(id, code)).await.expect("reply");
                }
                proto::FXP_LSTAT => {
                    lstats.push(id);
                    if lstats.len() == 50 {
                        for id in lstats.drain(..).rev() {
                            let mut e = Encoder::new(proto::FXP_ATTRS, 16);
                            e.u32(id).attrs(&FileAttrs {
                                size: Some(u64::from(id)),
                                ..FileAttrs::default()
                            });
                            s.write_all(&e.finish()).await.expect("reply");
                        }
                    }
                }
                _ => s
                    .write_all(&status(id, proto::FX_OP_UNSUPPORTED))
                    .await
                    .expect("reply"),
            }
        }
    })
    .await;
    let h = client
        .open(b"f", OpenFlags::WRITE, &FileAttrs::default())
        .await
        .expect("open");
    assert_eq!(h.raw(), b"\xff\x80\x00h");
    client
        .write(&h, 0, b"data")
        .await
        .expect("write with the exact handle");

    let mut tasks = Vec::new();
    for _ in 0..50 {
        let c = client.clone();
        tasks.push(tokio::spawn(async move { c.lstat(b"p").await }));
    }
    let mut sizes = Vec::new();
    for t in tasks {
        sizes.push(t.await.expect("join").expect("lstat").size.expect("size"));
    }
    sizes.sort_unstable();
    sizes.dedup();
    assert_eq!(sizes.len(), 50, "every request got its own reply");

    let err = client.rmdir(b"caf\xe9").await.expect_err("unsupported");
    assert!(matches!(err, SftpError::OpUnsupported { .. }));
    assert!(err.to_string().contains("caf\\xe9"), "{err}");
    let missing = client
        .posix_rename(b"a", b"b")
        .await
        .expect_err("not announced");
    assert!(matches!(missing, SftpError::ExtensionUnsupported(_)));
}

/// Compile-time check: the futures of the public API can be spawned (are `Send`).
#[allow(dead_code)]
fn futures_are_send(c: SftpClient, h: Handle) {
    tokio::spawn(async move {
        let _ = c.read_file(b"p").await;
        let _ = c.write(&h, 0, b"d").await;
        let _ = c.write_file(b"p", b"d", 0o644, true).await;
        let _ = c.write_file_from(b"p", &b"d"[..], 0o644, false).await;
        let _ = c.read_dir(b"p").await;
        let _ = c.statvfs(b"p").await;
        if let Ok(mut w) = c.create_file(b"p", 0o644).await {
            let _ = w.write(b"d").await;
            let _ = w.finish(true).await;
        }
    });
}
