//! Small HTTP helpers shared by the handlers: cookies, the client's address prefix, security headers.

use std::net::IpAddr;

use axum::extract::{ConnectInfo, Request};

use crate::tls::PeerAddr;
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};

/// Text made safe inside HTML or XML, attribute values included.
pub fn escape_markup(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// `text` as HTML with every phone number in it a `tel:` link, so a phone that does not detect
/// numbers by itself still calls with one tap. A phone number is a run of digits, spaces, dashes,
/// a leading `+` and brackets before its first digit ("(555) 010-4410", "+34 912 345 678") holding
/// 7 to 15 digits; anything else (an extension, a year, a date, a time, a long reference number)
/// stays text, whole.
pub fn phone_links(text: &str) -> String {
    let mut out = String::new();
    for (run, digits) in phone_runs(text) {
        match digits {
            Some(digits) => {
                let plus = if run.starts_with('+') { "+" } else { "" };
                out.push_str(&format!(
                    "<a class=\"tel\" href=\"tel:{plus}{digits}\">{}</a>",
                    escape_markup(&run)
                ));
            }
            None => out.push_str(&escape_markup(&run)),
        }
    }
    out
}

/// A call-back contact a person left as HTML an agent acts on with one tap: an email address as a
/// `mailto:` link, phone numbers as `tel:` links (`phone_links`), anything else as text.
pub fn contact_links(text: &str) -> String {
    let trimmed = text.trim();
    // Only a plain address: `?`, `&`, `%`, `#` and `,` would let whoever left it add recipients or
    // a prefilled body to the agent's mail (`a@b.co?bcc=...`).
    let is_email = !trimmed
        .contains(|c: char| c.is_whitespace() || matches!(c, '?' | '&' | '%' | '#' | ','))
        && trimmed.split_once('@').is_some_and(|(user, host)| {
            !user.is_empty() && host.contains('.') && !host.contains('@')
        });
    if is_email {
        let escaped = escape_markup(trimmed);
        format!("<a class=\"mail\" href=\"mailto:{escaped}\">{escaped}</a>")
    } else {
        phone_links(text)
    }
}

/// `text` with every phone number (as `phone_links` finds them) and email address replaced by
/// "[phone]" and "[email]": a question shown to people who need its words, not whom to call back
/// (the content team's unanswered-questions view and its CSV).
pub fn without_contacts(text: &str) -> String {
    let emails_out: Vec<String> = text
        .split(' ')
        .map(|word| {
            let bare = word.trim_matches(|c: char| !c.is_alphanumeric());
            match bare.split_once('@') {
                Some((user, host)) if !user.is_empty() && host.contains('.') => {
                    word.replacen(bare, "[email]", 1)
                }
                _ => word.to_string(),
            }
        })
        .collect();
    phone_runs(&emails_out.join(" "))
        .into_iter()
        .map(|(run, digits)| match digits {
            Some(_) => "[phone]".to_string(),
            None => run,
        })
        .collect()
}

/// `text` cut into runs, each with its digits when it is a phone number.
fn phone_runs(text: &str) -> Vec<(String, Option<String>)> {
    let chars: Vec<char> = text.chars().collect();
    let mut runs: Vec<(String, Option<String>)> = Vec::new();
    let mut plain = String::new();
    let mut i = 0;
    while i < chars.len() {
        if !(chars[i].is_ascii_digit() || chars[i] == '+' || chars[i] == '(') {
            plain.push(chars[i]);
            i += 1;
            continue;
        }
        let mut end = i;
        let mut seen_digit = false;
        while end < chars.len() {
            let c = chars[end];
            let fits = c.is_ascii_digit()
                || c == ' '
                || c == '-'
                || (c == '+' && end == i)
                || (!seen_digit && c == '(')
                || (c == ')' && chars[i..end].contains(&'(') && !chars[i..end].contains(&')'));
            if !fits {
                break;
            }
            seen_digit |= c.is_ascii_digit();
            end += 1;
        }
        // Not trailing separators: "(555) 010-4410, ask" ends at the last digit.
        while end > i && !chars[end - 1].is_ascii_digit() {
            end -= 1;
        }
        let end = end.max(i + 1);
        let run: String = chars[i..end].iter().collect();
        let digits: String = run.chars().filter(char::is_ascii_digit).collect();
        let iso_date = run.len() == 10 && run.chars().filter(|c| *c == '-').count() == 2;
        if (7..=15).contains(&digits.len()) && !iso_date {
            if !plain.is_empty() {
                runs.push((std::mem::take(&mut plain), None));
            }
            runs.push((run, Some(digits)));
        } else {
            plain.push_str(&run);
        }
        i = end;
    }
    if !plain.is_empty() {
        runs.push((plain, None));
    }
    runs
}

/// A cookie's value from the request's `Cookie` headers.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim_matches('"'))
}

/// A `Set-Cookie` value: HttpOnly, SameSite=Lax (a scan from the camera app is a top-level navigation
/// and must carry the staff session), Secure when served over TLS.
pub fn set_cookie(
    name: &str,
    value: &str,
    path: &str,
    max_age_s: Option<u64>,
    secure: bool,
) -> String {
    let mut c = String::with_capacity(name.len() + value.len() + path.len() + 64);
    for part in [
        name,
        "=",
        value,
        "; Path=",
        path,
        "; HttpOnly; SameSite=Lax",
    ] {
        c.push_str(part);
    }
    if let Some(age) = max_age_s {
        use std::fmt::Write;
        let _ = write!(c, "; Max-Age={age}");
    }
    if secure {
        c.push_str("; Secure");
    }
    c
}

/// Adds `Retry-After` (whole seconds, at least 1) to a refusal that a wait will lift: a rate limit or
/// a lockout (429) or a busy assistant (503), so clients back off for as long as needed and no longer.
pub fn with_retry_after(mut response: Response, wait: Option<std::time::Duration>) -> Response {
    if let Some(wait) = wait {
        let seconds = wait.as_secs_f64().ceil().max(1.0) as u64;
        response
            .headers_mut()
            .insert(axum::http::header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    response
}

pub fn user_agent(headers: &HeaderMap) -> &str {
    headers
        .get(axum::http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

/// A header's value as text. `name` may be a `HeaderName` constant (found without parsing the name,
/// as the scan path does) or a string.
pub fn header(headers: &HeaderMap, name: impl axum::http::header::AsHeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// The peer address of the connection, when the server was started with connect info.
pub fn peer(request: &Request) -> Option<IpAddr> {
    peer_of(request.extensions())
}

/// The same from a request's extensions (plain TCP or TLS alike).
pub fn peer_of(extensions: &axum::http::Extensions) -> Option<IpAddr> {
    extensions
        .get::<ConnectInfo<PeerAddr>>()
        .map(|c| c.0 .0.ip())
}

/// When `request` comes from a trusted proxy, makes its peer address the client the proxies name
/// in `X-Forwarded-For`, so every limit, the scan events and `/metrics` see the real client. The
/// header is read from the right, skipping trusted proxies: entries further left were written by
/// the client itself and are not believed. A header that names no usable address leaves the
/// proxy's own address (all such requests then share one limit, as without the setting).
fn believe_forwarded_for(request: &mut Request, trusted: &[IpAddr]) {
    let Some(ConnectInfo(PeerAddr(proxy))) =
        request.extensions().get::<ConnectInfo<PeerAddr>>().copied()
    else {
        return;
    };
    if !trusted.contains(&canonical(proxy.ip())) {
        return;
    }
    let headers = request.headers().get_all("x-forwarded-for");
    let entries: Vec<&str> = headers
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    let client = entries
        .iter()
        .rev()
        .map(|entry| forwarded_address(entry))
        .find(|ip| !ip.is_some_and(|ip| trusted.contains(&ip)));
    if let Some(Some(client)) = client {
        request
            .extensions_mut()
            .insert(ConnectInfo(PeerAddr(std::net::SocketAddr::new(client, 0))));
    }
}

/// An address as `X-Forwarded-For` writes it: `203.0.113.7`, `2001:db8::1`, or with a port
/// (`203.0.113.7:4711`, `[2001:db8::1]:4711`).
fn forwarded_address(entry: &str) -> Option<IpAddr> {
    entry
        .parse::<IpAddr>()
        .ok()
        .or_else(|| entry.parse::<std::net::SocketAddr>().ok().map(|s| s.ip()))
        .map(canonical)
}

/// An IPv4 address seen through an IPv6 socket (`::ffff:127.0.0.1`) as the IPv4 address it is.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// What may be kept of an address: the /24 of IPv4, the /48 of IPv6. Never the whole address.
pub fn ip_prefix(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            // By hand rather than `format!`: every scan stores one.
            let o = v4.octets();
            let mut prefix = String::with_capacity(18);
            for octet in &o[..3] {
                push_decimal(&mut prefix, u32::from(*octet));
                prefix.push('.');
            }
            prefix.push_str("0/24");
            prefix
        }
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => ip_prefix(IpAddr::V4(v4)),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}::/48", s[0], s[1], s[2])
            }
        },
    }
}

/// The one middleware every request passes: refuses oversized bodies, then adds the security
/// headers to whatever answers (and HSTS when served over TLS).
///
/// A plain tower layer rather than `axum::middleware::from_fn`, which clones the routes' service and
/// boxes a future for every request (with the scan events' static text, this cut a redirect scan's
/// server CPU by about 15%; README, "Scan throughput").
#[derive(Clone)]
pub struct GuardLayer {
    pub strict_transport_security: bool,
    /// See `ServerConfig::trusted_proxies`.
    pub trusted_proxies: std::sync::Arc<[IpAddr]>,
}

impl<S> tower::Layer<S> for GuardLayer {
    type Service = Guard<S>;
    fn layer(&self, inner: S) -> Guard<S> {
        Guard {
            inner,
            strict_transport_security: self.strict_transport_security,
            trusted_proxies: self.trusted_proxies.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Guard<S> {
    inner: S,
    strict_transport_security: bool,
    trusted_proxies: std::sync::Arc<[IpAddr]>,
}

type Answered = Result<Response, std::convert::Infallible>;

impl<S> tower::Service<Request> for Guard<S>
where
    S: tower::Service<Request, Response = Response, Error = std::convert::Infallible>,
{
    type Response = Response;
    type Error = std::convert::Infallible;
    type Future = futures_util::future::Either<
        std::future::Ready<Answered>,
        futures_util::future::Map<S::Future, fn(Answered) -> Answered>,
    >;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request) -> Self::Future {
        use futures_util::future::{Either, FutureExt};
        if !self.trusted_proxies.is_empty() {
            believe_forwarded_for(&mut request, &self.trusted_proxies);
        }
        // The JSON API answers a server fault in JSON too (a pipeline or the chat reads the error).
        let api = request.uri().path().starts_with("/api/");
        let with_headers: fn(Answered) -> Answered = match (self.strict_transport_security, api) {
            (true, true) => |answered| answered.map(|r| secured(json_fault(r), true)),
            (true, false) => |answered| answered.map(|r| secured(r, true)),
            (false, true) => |answered| answered.map(|r| secured(json_fault(r), false)),
            (false, false) => |answered| answered.map(|r| secured(r, false)),
        };
        match oversized(&request) {
            Some(refusal) => Either::Left(std::future::ready(with_headers(Ok(refusal)))),
            None => Either::Right(self.inner.call(request).map(with_headers)),
        }
    }
}

/// A response made from an `AppError` (a short HTML page) as `{"error", "busy"}` JSON with the same
/// status and headers; any other response as it is.
fn json_fault(response: Response) -> Response {
    let Some(fault) = response
        .extensions()
        .get::<crate::error::ServerFault>()
        .copied()
    else {
        return response;
    };
    let (mut parts, _) = response.into_parts();
    let message = if fault.busy {
        crate::error::BUSY_MESSAGE
    } else {
        crate::error::FAULT_MESSAGE
    };
    let body = serde_json::json!({ "error": message, "busy": fault.busy }).to_string();
    parts.headers.insert(
        axum::http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    parts.headers.remove(axum::http::header::CONTENT_LENGTH);
    Response::from_parts(parts, axum::body::Body::from(body))
}

fn secured(mut response: Response, strict_transport_security: bool) -> Response {
    let headers = response.headers_mut();
    add_security_headers(headers);
    if strict_transport_security {
        // Tells browsers to use HTTPS only, for a year: only when the server is told it is served
        // over TLS (`--secure-cookies`, directly or behind a proxy), never over plain HTTP where it
        // would be ignored or, on a shared host name, harmful.
        headers.insert(
            axum::http::header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000"),
        );
    }
    response
}

/// Refuses a request whose declared `Content-Length` is over `MAX_BODY_BYTES` before reading any of
/// it, with a short page saying what happened. The body limit layer still guards bodies sent
/// without a length (chunked); this answers the common case at once, so a client is not left
/// writing into a connection the server has already given up on.
fn oversized(request: &Request) -> Option<Response> {
    let declared = request
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())?;
    // Manuals are long documents; everything else is a question or a short form.
    let path = request.uri().path();
    let (limit, what) =
        if path.starts_with("/admin/manuals") || path.starts_with("/api/content/manuals") {
            (crate::MAX_MANUAL_FORM_BYTES, "A manual must be")
        } else if path == "/admin/rules" {
            (crate::MAX_MANUAL_FORM_BYTES, "The rules must be")
        } else if path == "/patients/new" {
            (crate::MAX_PACKET_FORM_BYTES, "A packet must be")
        } else {
            (crate::MAX_BODY_BYTES, "Questions and forms must be")
        };
    let size = if limit >= 1024 * 1024 {
        format!("{} MB", limit / (1024 * 1024))
    } else {
        format!("{} KB", limit / 1024)
    };
    let message =
        format!("That request was too long. {what} under {size}; please shorten it and try again.");
    let headers = [("cache-control", "no-store"), ("connection", "close")];
    (declared > limit as u64).then(|| {
        let status = axum::http::StatusCode::PAYLOAD_TOO_LARGE;
        // The JSON API answers in JSON, as for every other error there.
        if path.starts_with("/api/") {
            let body = serde_json::json!({ "error": message });
            (status, headers, axum::Json(body)).into_response()
        } else {
            let page = format!(
                "<!doctype html><meta name=viewport content=\"width=device-width\"><title>Too long</title><p>{message}</p><p><a href=\"/\">Home</a></p>"
            );
            (status, headers, axum::response::Html(page)).into_response()
        }
    })
}

/// Appends `n` in decimal.
pub fn push_decimal(out: &mut String, n: u32) {
    let mut digits = [0u8; 10];
    let mut i = digits.len();
    let mut n = n;
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend(digits[i..].iter().map(|&d| d as char));
}

/// Headers every response carries (a handler's own value wins). No inline scripts anywhere, so the
/// policy can forbid them.
fn add_security_headers(h: &mut HeaderMap) {
    use axum::http::header;
    let policies = [
        (header::CONTENT_SECURITY_POLICY, "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_FRAME_OPTIONS, "DENY"),
    ];
    for (name, value) in policies {
        h.entry(name).or_insert(HeaderValue::from_static(value));
    }
}

/// A numeric id from the path (`/support/tickets/{id}`, `/admin/jobs/{id}`): anything else there is
/// answered as an unknown id is, with a 404 page, instead of axum's plain-text 400.
pub struct NumericId(pub i64);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for NumericId {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<i64>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(id)) => Ok(NumericId(id)),
            Err(_) => Err(no_such_page()),
        }
    }
}

/// A query string read leniently: one that cannot be read (`?lang=en&lang=es`, `?days=1&days=2`)
/// counts as none, so the page opens with its defaults instead of axum's plain-text 400. Query
/// parameters only ever choose how a page is shown, never what is done.
pub struct LenientQuery<T>(pub T);

impl<T, S> axum::extract::FromRequestParts<S> for LenientQuery<T>
where
    T: serde::de::DeserializeOwned + Default,
    S: Send + Sync,
{
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        let query = axum::extract::Query::<T>::from_request_parts(parts, state).await;
        Ok(LenientQuery(
            query.map(|axum::extract::Query(q)| q).unwrap_or_default(),
        ))
    }
}

/// A form body that is read leniently: one that cannot be read as the form (a field given twice,
/// bytes that are not UTF-8, another content type) is the empty form, which every handler answers
/// with its own page saying what is missing (or that the form expired), instead of axum's plain-text
/// 400/415/422. One too long is a 413 page.
pub struct LenientForm<T>(pub T);

impl<T, S> axum::extract::FromRequest<S> for LenientForm<T>
where
    T: serde::de::DeserializeOwned + Default,
    S: Send + Sync,
{
    type Rejection = Response;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Form::<T>::from_request(request, state).await {
            Ok(axum::Form(form)) => Ok(LenientForm(form)),
            // Too long (sent without a declared length, so the guard could not answer first): a
            // request too long is that, not an empty form.
            Err(rejection) if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE => {
                Err((
                    axum::http::StatusCode::PAYLOAD_TOO_LARGE,
                    [("cache-control", "no-store")],
                    axum::response::Html(
                        "<!doctype html><meta name=viewport content=\"width=device-width\"><title>Too long</title><p>That request was too long; please shorten it and try again.</p><p><a href=\"/\">Home</a></p>",
                    ),
                )
                    .into_response())
            }
            Err(_) => Ok(LenientForm(T::default())),
        }
    }
}

/// One path parameter as text (`/c/{code}`, `/m/{manual}`, `/api/content/manuals/{id}`). Bytes that
/// are not UTF-8 (`/c/%FF`) cannot name anything: they read as the empty string, which every
/// handler answers as an unknown code, manual or id (its own 404 page, or JSON under `/api/`),
/// rather than axum's plain-text 400.
pub struct PathSegment(pub String);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for PathSegment {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        let code = axum::extract::Path::<String>::from_request_parts(parts, state).await;
        Ok(PathSegment(
            code.map(|axum::extract::Path(c)| c).unwrap_or_default(),
        ))
    }
}

/// The 404 page for an address that names nothing.
pub fn no_such_page() -> Response {
    use askama::Template;
    let page = crate::views::MessagePage {
        lang: "en".to_string(),
        heading: "Not found".to_string(),
        message: "There is nothing at this address. Check the link, or start from the home page."
            .to_string(),
        back: "/".to_string(),
    }
    .render()
    .unwrap_or_else(|_| "Not found".to_string());
    (
        axum::http::StatusCode::NOT_FOUND,
        [(axum::http::header::CACHE_CONTROL, "no-store")],
        axum::response::Html(page),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_contact_is_a_mail_or_phone_link_and_nothing_else_is() {
        assert_eq!(
            super::contact_links("ana@example.org"),
            "<a class=\"mail\" href=\"mailto:ana@example.org\">ana@example.org</a>"
        );
        assert_eq!(
            super::contact_links("+34 600 111 222"),
            "<a class=\"tel\" href=\"tel:+34600111222\">+34 600 111 222</a>"
        );
        assert_eq!(
            super::contact_links("\"><script>@x.y"),
            "<a class=\"mail\" href=\"mailto:&quot;&gt;&lt;script&gt;@x.y\">&quot;&gt;&lt;script&gt;@x.y</a>"
        );
        assert_eq!(super::contact_links("call me <b>"), "call me &lt;b&gt;");
        // Not an address a tap may turn into mail with recipients or text someone else chose.
        assert_eq!(
            super::contact_links("a@b.co?bcc=x%40evil.example&body=hi"),
            "a@b.co?bcc=x%40evil.example&amp;body=hi"
        );
    }

    use super::*;

    #[test]
    fn phone_numbers_become_tel_links_and_nothing_else_does() {
        assert_eq!(
            phone_links("Biomedical Engineering, ext. 4410, (555) 010-4410"),
            "Biomedical Engineering, ext. 4410, <a class=\"tel\" href=\"tel:5550104410\">(555) 010-4410</a>"
        );
        assert_eq!(
            phone_links("+34 912 345 678 <b>"),
            "<a class=\"tel\" href=\"tel:+34912345678\">+34 912 345 678</a> &lt;b&gt;"
        );
        assert_eq!(phone_links("since 2026, room 12"), "since 2026, room 12");
        assert_eq!(
            without_contacts(
                "call me on +34 600 000 000 or at ana.g@example.org, pump E-204 since 2026-12-07"
            ),
            "call me on [phone] or at [email], pump E-204 since 2026-12-07"
        );
        assert_eq!(
            without_contacts("(555) 010-4410, ext. 12 <b>"),
            "[phone], ext. 12 <b>"
        );
        assert_eq!(without_contacts("flow 40 ml @ 2 bar"), "flow 40 ml @ 2 bar");
        assert_eq!(phone_links(""), "");
        assert_eq!(phone_links("ward (4B)"), "ward (4B)");
        // A long reference is text, whole; so are a date and an opening time; a note in
        // brackets after a number is not part of it.
        assert_eq!(
            phone_links("ref 1234 5678 9012 3456"),
            "ref 1234 5678 9012 3456"
        );
        assert_eq!(phone_links("on 2026-12-07"), "on 2026-12-07");
        assert_eq!(phone_links("open 8.00-17.00"), "open 8.00-17.00");
        assert_eq!(
            phone_links("(555) 010-4000 (24h)"),
            "<a class=\"tel\" href=\"tel:5550104000\">(555) 010-4000</a> (24h)"
        );
    }

    #[test]
    fn prefixes_never_keep_the_host_part() {
        assert_eq!(ip_prefix("203.0.113.77".parse().unwrap()), "203.0.113.0/24");
        assert_eq!(
            ip_prefix("2001:db8:abcd:12::1".parse().unwrap()),
            "2001:db8:abcd::/48"
        );
        assert_eq!(ip_prefix("::ffff:10.1.2.3".parse().unwrap()), "10.1.2.0/24");
    }

    #[test]
    fn decimals_and_cookies_read_as_format_would_write_them() {
        for n in [0, 7, 10, 99, 100, 255, 65_535, u32::MAX] {
            let mut s = String::from("x");
            push_decimal(&mut s, n);
            assert_eq!(s, format!("x{n}"));
        }
        assert_eq!(
            set_cookie("a", "b.c", "/c", Some(31_536_000), true),
            "a=b.c; Path=/c; HttpOnly; SameSite=Lax; Max-Age=31536000; Secure"
        );
        assert_eq!(
            set_cookie("s", "", "/", None, false),
            "s=; Path=/; HttpOnly; SameSite=Lax"
        );
        assert_eq!(ip_prefix("0.0.0.9".parse().unwrap()), "0.0.0.0/24");
        assert_eq!(
            ip_prefix("255.255.255.255".parse().unwrap()),
            "255.255.255.0/24"
        );
    }

    #[test]
    fn cookies_are_found_among_others() {
        let mut h = HeaderMap::new();
        h.insert(
            "cookie",
            HeaderValue::from_static("a=1; scanaid_session=abc; b=2"),
        );
        assert_eq!(cookie(&h, "scanaid_session"), Some("abc"));
        assert_eq!(cookie(&h, "missing"), None);
    }
}
