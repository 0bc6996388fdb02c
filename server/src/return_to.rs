//! Where a member of staff goes after signing in: back to the page that sent them to sign in (a
//! technician who scanned a pump and signed in to see its fault codes, an agent who opened a
//! ticket's link), else to their role's own page. A return address comes from our own redirect or
//! link and is kept only if it is a page path on this site: never another site (an open redirect
//! would let a phishing link borrow our sign-in page), never an event stream or an API.

use axum::extract::Request;
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;

use crate::roles::Role;

/// Longer return addresses are dropped: no page of ours has one.
const MAX_NEXT: usize = 512;

/// `next` if it is a page path of this site, else `None`. A path starts with one `/` and holds
/// only printable ASCII without a backslash (browsers read `/\host` as `//host`, another site),
/// without a `%` or a dot segment.
pub fn safe_next(next: &str) -> Option<&str> {
    let path = next.split(['?', '#']).next().unwrap_or("");
    let page = next.len() <= MAX_NEXT
        && next.starts_with('/')
        && !next.starts_with("//")
        && next.bytes().all(|b| b.is_ascii_graphic() && b != b'\\')
        // Browsers resolve `.` and `..` segments (`%2e` too) before asking: `/./api/chat` would
        // be the API. No page path of ours has either, or a `%`.
        && !path.contains('%')
        && !path.split('/').any(|segment| segment == "." || segment == "..")
        && !path.starts_with("/api/")
        && !path.ends_with("/events")
        && !matches!(path, "/signin" | "/signout" | "/patient/signout");
    page.then_some(next)
}

/// The sign-in page's address that comes back to `next` (unchecked here: `safe_next` is applied
/// when the form is shown and again when it is sent).
pub fn signin_url(next: &str) -> String {
    let query = form_urlencoded::Serializer::new(String::new())
        .append_pair("next", next)
        .finish();
    format!("/signin?{query}")
}

/// Where a role goes after signing in with no page to return to: the page its work starts from.
pub fn landing(role: Role) -> &'static str {
    match role {
        Role::Admin => "/admin",
        Role::Agent => "/support",
        Role::Clinician => "/patients",
        Role::Editor => "/admin/manuals",
        // Equipment roles work from the code on the equipment; home says how to find one.
        Role::Anonymous | Role::Operator | Role::Technician | Role::Biomed | Role::Patient => "/",
    }
}

/// Middleware for the staff pages: a page request sent to sign in (`require_role`'s 303 to
/// `/signin`) is sent there with its own address as `next`, so signing in comes back to it.
/// Only on the staff routes: the scan path pays nothing for it.
pub async fn remember_the_page(request: Request, next: Next) -> Response {
    let page = (request.method() == Method::GET)
        .then(|| {
            request
                .uri()
                .path_and_query()
                .map(|p| p.as_str().to_string())
        })
        .flatten();
    let mut response = next.run(request).await;
    let Some(page) = page else {
        return response;
    };
    let to_signin = response.status() == StatusCode::SEE_OTHER
        && response
            .headers()
            .get(header::LOCATION)
            .is_some_and(|l| l == "/signin");
    if to_signin {
        if let Some(page) = safe_next(&page) {
            if let Ok(location) = HeaderValue::from_str(&signin_url(page)) {
                response.headers_mut().insert(header::LOCATION, location);
            }
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_page_paths_of_this_site_are_returned_to() {
        for good in [
            "/support/tickets/12",
            "/c/tJ6bpUpB",
            "/admin/scans?days=30",
            "/patients",
        ] {
            assert_eq!(safe_next(good), Some(good), "{good}");
        }
        for bad in [
            "",
            "support",
            "//evil.example/x",
            "/\\evil.example",
            "https://evil.example/",
            "/c/x y",
            "/c/\u{e9}",
            "/support/events",
            "/api/chat/abc/events",
            "/api/content/manuals",
            "/signin",
            "/signin?next=/support",
            "/signout",
            "/./api/chat",
            "/support/../api/chat",
            "/%2e/support/events",
            "/c/x\tz",
            "/c/x\nLocation: //evil",
        ] {
            assert_eq!(safe_next(bad), None, "{bad:?}");
        }
        assert_eq!(safe_next(&format!("/{}", "a".repeat(MAX_NEXT))), None);
    }

    #[test]
    fn the_signin_address_carries_the_page_encoded() {
        assert_eq!(
            signin_url("/admin/scans?days=30"),
            "/signin?next=%2Fadmin%2Fscans%3Fdays%3D30"
        );
    }
}
