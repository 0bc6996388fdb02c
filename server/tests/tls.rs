//! End-to-end: the server over HTTPS (rustls) with a certificate made for the test. A client that
//! trusts it gets pages with HSTS and Secure cookies; plain HTTP on the TLS port gets no page; a
//! client that does not trust the certificate gets no page either; neither disturbs the next client.

mod common;

use std::sync::Arc;

use common::*;
use scanaid_server::ServerConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;

struct Served {
    app: TestApp,
    cert: CertificateDer<'static>,
    _dir: tempfile::TempDir,
}

fn serve_https() -> Served {
    let signed = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_path, signed.cert.pem()).unwrap();
    std::fs::write(&key_path, signed.key_pair.serialize_pem()).unwrap();
    let tls = scanaid_server::tls::load_config(&cert_path, &key_path).expect("certificate loads");
    let config = ServerConfig {
        secure_cookies: true,
        ..ServerConfig::default()
    };
    Served {
        app: spawn_app_tls(config, tls),
        cert: signed.cert.der().clone(),
        _dir: dir,
    }
}

fn client_trusting(cert: Option<&CertificateDer<'static>>) -> TlsConnector {
    let mut roots = RootCertStore::empty();
    if let Some(cert) = cert {
        roots.add(cert.clone()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    TlsConnector::from(Arc::new(config))
}

/// One HTTP/1.1 GET over TLS; the whole response, or the handshake's error.
fn https_get(served: &Served, connector: &TlsConnector, path: &str) -> Result<String, String> {
    let addr = served.app.addr;
    served.app.block_on(async {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let name = ServerName::try_from("localhost").unwrap();
        let mut tls = connector
            .connect(name, tcp)
            .await
            .map_err(|e| e.to_string())?;
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
        tls.write_all(request.as_bytes()).await.unwrap();
        let mut response = Vec::new();
        let _ = tls.read_to_end(&mut response).await;
        Ok(String::from_utf8_lossy(&response).into_owned())
    })
}

#[test]
fn over_tls_pages_carry_hsts_and_secure_cookies_and_bad_clients_get_nothing() {
    let served = serve_https();
    let trusting = client_trusting(Some(&served.cert));

    let page = https_get(&served, &trusting, "/c/tJ6bpUpB").expect("handshake");
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    assert!(
        page.to_lowercase()
            .contains("strict-transport-security: max-age="),
        "{page}"
    );
    assert!(page.contains("<html"), "a real page: {page}");

    let signin = https_get(&served, &trusting, "/signin").expect("handshake");
    let cookie = signin
        .lines()
        .find(|l| l.to_lowercase().starts_with("set-cookie:"))
        .expect("the sign-in form sets its CSRF cookie");
    assert!(cookie.contains("; Secure"), "{cookie}");

    // A client that does not trust the certificate: the handshake fails, no page.
    let stranger = client_trusting(None);
    let refused = https_get(&served, &stranger, "/c/tJ6bpUpB");
    assert!(refused.is_err(), "{refused:?}");

    // Plain HTTP on the TLS port: no HTTP answer.
    let plain = raw_request(
        &served.app,
        "GET /c/tJ6bpUpB HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    );
    assert!(!plain.starts_with("HTTP/1.1 200"), "{plain}");

    // A client that connects and says nothing does not hold up the next one.
    let silent = std::net::TcpStream::connect(served.app.addr).unwrap();
    let again = https_get(&served, &trusting, "/c/tJ6bpUpB").expect("handshake");
    assert!(again.starts_with("HTTP/1.1 200"), "{again}");
    drop(silent);
}

/// What an HTTP/2 request got: its status, headers and whole body.
struct H2Reply {
    status: u16,
    headers: axum::http::HeaderMap,
    body: String,
}

type H2Client = h2::client::SendRequest<axum::body::Bytes>;

/// One request on an HTTP/2 connection (a form body when `form` is given), read to its end.
async fn h2_fetch(client: H2Client, path: &str, cookie: &str, form: Option<&str>) -> H2Reply {
    let mut client = client.ready().await.unwrap();
    let mut request = axum::http::Request::builder()
        .method(if form.is_some() { "POST" } else { "GET" })
        .uri(format!("https://localhost{path}"))
        .header("cookie", cookie);
    if form.is_some() {
        request = request.header("content-type", "application/x-www-form-urlencoded");
    }
    let (response, mut sending) = client
        .send_request(request.body(()).unwrap(), form.is_none())
        .unwrap();
    if let Some(form) = form {
        sending
            .send_data(axum::body::Bytes::from(form.to_string()), true)
            .unwrap();
    }
    let response = response.await.expect("answered");
    let (parts, mut body) = response.into_parts();
    let mut bytes = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.unwrap();
        let _ = body.flow_control().release_capacity(chunk.len());
        bytes.extend_from_slice(&chunk);
    }
    H2Reply {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

/// The value of cookie `name` set by a reply.
fn set_cookie(reply: &H2Reply, name: &str) -> String {
    reply
        .headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| v.strip_prefix(&format!("{name}=")))
        .and_then(|v| v.split(';').next())
        .unwrap_or_else(|| panic!("no {name} cookie: {:?}", reply.headers))
        .to_string()
}

/// Over TLS the server speaks HTTP/2 to a client that offers it (ALPN), so one connection carries
/// many requests at once: an agent's console tabs each hold a live stream, and with HTTP/1.1's
/// six connections per server they would leave none for sending a reply. Here an agent signs in
/// through the real form, then eight console streams stay open on one connection while pages
/// are still answered on it.
#[test]
fn over_tls_one_http2_connection_carries_many_live_streams_and_pages() {
    let served = serve_https();
    let store = served.app.state.store.clone();
    served
        .app
        .block_on(async move {
            scanaid_server::auth::create_user(
                &store,
                "ana.h2",
                "ana.h2-password-long",
                scanaid_server::roles::Role::Agent,
            )
            .await
        })
        .unwrap();
    let mut roots = RootCertStore::empty();
    roots.add(served.cert.clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let connector = TlsConnector::from(Arc::new(config));
    let addr = served.app.addr;
    served.app.block_on(async {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let name = ServerName::try_from("localhost").unwrap();
        let tls = connector.connect(name, tcp).await.expect("handshake");
        assert_eq!(
            tls.get_ref().1.alpn_protocol(),
            Some(&b"h2"[..]),
            "the server chose HTTP/2"
        );
        let (client, connection) = h2::client::handshake(tls).await.expect("HTTP/2 preface");
        tokio::spawn(connection);

        // Signing in through the form, over HTTP/2.
        let form = h2_fetch(client.clone(), "/signin", "", None).await;
        assert_eq!(form.status, 200, "{}", form.body);
        let csrf_cookie = set_cookie(&form, "scanaid_csrf");
        let marker = "name=\"csrf\" value=\"";
        let start = form.body.find(marker).expect("a csrf field") + marker.len();
        let csrf = &form.body[start..start + form.body[start..].find('"').unwrap()];
        let signed_in = h2_fetch(
            client.clone(),
            "/signin",
            &format!("scanaid_csrf={csrf_cookie}"),
            Some(&format!(
                "csrf={csrf}&username=ana.h2&password=ana.h2-password-long"
            )),
        )
        .await;
        assert_eq!(signed_in.status, 303, "{}", signed_in.body);
        let agent = format!(
            "scanaid_session={}",
            set_cookie(&signed_in, "scanaid_session")
        );

        // Eight live console streams, all open at once on this one connection.
        let mut streams = Vec::new();
        for _ in 0..8 {
            let mut ready = client.clone().ready().await.unwrap();
            let request = axum::http::Request::get("https://localhost/support/events")
                .header("cookie", agent.as_str())
                .body(())
                .unwrap();
            let (response, _) = ready.send_request(request, true).unwrap();
            let response = response.await.expect("a console stream opens");
            assert_eq!(response.status(), 200);
            assert_eq!(
                response.headers()["content-type"],
                "text/event-stream",
                "{:?}",
                response.headers()
            );
            streams.push(response.into_body());
        }
        // Still answered on the same connection, streams and all.
        for path in ["/c/tJ6bpUpB", "/support"] {
            let page = h2_fetch(client.clone(), path, &agent, None).await;
            assert_eq!(page.status, 200, "{path}: {}", page.body);
            assert!(
                page.headers.contains_key("strict-transport-security"),
                "{path}"
            );
            assert!(page.body.contains("<html"), "{path}: a real page");
        }
        assert!(
            streams.iter().all(|s| !s.is_end_stream()),
            "every console stream is still open"
        );
    });
}
