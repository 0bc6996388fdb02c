//! Just enough of W3C WebDriver to drive Debian's chromium through chromium-driver: sessions,
//! navigation, finding elements, clicking, typing, reading text, running a script. WebDriver is
//! plain JSON over HTTP, so this uses the blocking client the tests already have instead of an async
//! WebDriver crate with its own HTTP and TLS stack.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// The key W3C WebDriver puts element references under.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A chromedriver process on a free loopback port, stopped on drop.
pub struct Driver {
    url: String,
    child: Child,
}

impl Driver {
    pub fn start() -> Driver {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let binary = ["chromedriver", "chromium-driver"]
            .into_iter()
            .find(|b| {
                Command::new(b)
                    .arg("--version")
                    .output()
                    .is_ok_and(|o| o.status.success())
            })
            .expect("chromedriver is installed (.ci/run installs Debian's chromium-driver)");
        let child = Command::new(binary)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let driver = Driver {
            url: format!("http://127.0.0.1:{port}"),
            child,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = ureq::get(&format!("{}/status", driver.url))
                .call()
                .ok()
                .and_then(|r| r.into_string().ok())
                .and_then(|s| serde_json::from_str::<Value>(&s).ok())
                .is_some_and(|v| v["value"]["ready"] == true);
            if ready {
                return driver;
            }
            assert!(Instant::now() < deadline, "chromedriver did not get ready");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// A new browser (its own profile, so its own cookies) emulating a phone of `width` x `height`.
    pub fn phone(&self, width: u32, height: u32, user_agent: &str) -> Browser {
        let mut options = json!({
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--no-first-run", "--disable-background-networking", "--disable-sync"],
            "mobileEmulation": {
                "deviceMetrics": {"width": width, "height": height, "pixelRatio": 2.0, "touch": true},
                "userAgent": user_agent
            }
        });
        if std::path::Path::new("/usr/bin/chromium").exists() {
            options["binary"] = json!("/usr/bin/chromium");
        }
        let created = call(
            "POST",
            &format!("{}/session", self.url),
            Some(json!({"capabilities": {"alwaysMatch": {"goog:chromeOptions": options}}})),
        );
        let id = created["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {created}"))
            .to_string();
        Browser {
            session: format!("{}/session/{id}", self.url),
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn call(method: &str, url: &str, body: Option<Value>) -> Value {
    let request = ureq::request(method, url).timeout(Duration::from_secs(60));
    let result = match body {
        Some(body) => request
            .set("content-type", "application/json")
            .send_string(&body.to_string()),
        None => request.call(),
    };
    let response = match result {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("WebDriver {method} {url}: {e}"),
    };
    let value: Value = serde_json::from_str(&response.into_string().expect("WebDriver answers"))
        .expect("WebDriver answers JSON");
    value.get("value").cloned().unwrap_or(Value::Null)
}

/// One browser session; closed on drop.
pub struct Browser {
    session: String,
}

/// An element reference in a session.
#[derive(Clone)]
pub struct Element {
    session: String,
    id: String,
}

impl Browser {
    fn post(&self, path: &str, body: Value) -> Value {
        call("POST", &format!("{}{path}", self.session), Some(body))
    }

    pub fn goto(&self, url: &str) {
        self.post("/url", json!({"url": url}));
    }

    pub fn current_url(&self) -> String {
        call("GET", &format!("{}/url", self.session), None)
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    pub fn back(&self) {
        self.post("/back", json!({}));
    }

    /// Every element matching a CSS selector now.
    pub fn find_all(&self, css: &str) -> Vec<Element> {
        self.post("/elements", json!({"using": "css selector", "value": css}))
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .filter_map(|e| e[ELEMENT].as_str())
            .map(|id| Element {
                session: self.session.clone(),
                id: id.to_string(),
            })
            .collect()
    }

    /// The first element matching `css`, waiting up to `timeout` for it to appear.
    pub fn wait_for(&self, css: &str, timeout: Duration) -> Element {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(e) = self.find_all(css).into_iter().next() {
                return e;
            }
            assert!(
                Instant::now() < deadline,
                "nothing matched {css:?} within {timeout:?} on {}",
                self.current_url()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits up to `timeout` for an element matching `css` to read `text`.
    pub fn wait_for_text(&self, css: &str, text: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if self.find_all(css).iter().any(|e| e.text() == text) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "no {css:?} read {text:?} within {timeout:?} on {}",
                self.current_url()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until the form field `css` holds `value` (what a script put back in it).
    pub fn wait_for_value(&self, css: &str, value: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let script = format!("var e = document.querySelector({css:?}); return e ? e.value : null;");
        loop {
            if self.run(&script).as_str() == Some(value) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{css:?} never held {value:?} within {timeout:?} on {}",
                self.current_url()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Clicks `css` (a button that submits a form) and waits until the page it leads to has loaded:
    /// under load the old page can still be there when the click returns, and reading it then
    /// would read the answer to the previous submission.
    pub fn submit_and_wait(&self, css: &str, timeout: Duration) {
        self.run("window.__scanaidBeforeSubmit = true; return true;");
        self.wait_for(css, timeout).click();
        let deadline = Instant::now() + timeout;
        loop {
            let state = self.run(
                "return window.__scanaidBeforeSubmit === true ? 'old page' : document.readyState;",
            );
            if state == "complete" {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the page after {css:?} did not load within {timeout:?} ({state})"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Runs `script` (a function body) in the page and returns what it returns.
    pub fn run(&self, script: &str) -> Value {
        self.post("/execute/sync", json!({"script": script, "args": []}))
    }

    pub fn screenshot_png(&self) -> Vec<u8> {
        use base64::Engine;
        let encoded = call("GET", &format!("{}/screenshot", self.session), None);
        base64::engine::general_purpose::STANDARD
            .decode(encoded.as_str().unwrap_or_default())
            .expect("a screenshot is base64")
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = ureq::delete(&self.session).call();
    }
}

impl Element {
    fn url(&self, action: &str) -> String {
        format!("{}/element/{}/{action}", self.session, self.id)
    }

    pub fn click(&self) {
        call("POST", &self.url("click"), Some(json!({})));
    }

    pub fn type_text(&self, text: &str) {
        call("POST", &self.url("value"), Some(json!({"text": text})));
    }

    pub fn text(&self) -> String {
        call("GET", &self.url("text"), None)
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    pub fn attribute(&self, name: &str) -> Option<String> {
        call("GET", &self.url(&format!("attribute/{name}")), None)
            .as_str()
            .map(str::to_string)
    }
}
