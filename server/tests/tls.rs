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
