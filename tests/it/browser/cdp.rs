//! A small Chrome DevTools Protocol client: starts headless Chromium with a fresh profile, talks
//! to it over its websocket, and drives pages, each in its own browser context (so each has its
//! own cookies, like two people on two machines).

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use base64::Engine;
use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::sync::{Mutex, oneshot};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Sink = SplitSink<WebSocketStream<MaybeTlsStream<TcpStream>>, Message>;

/// How long to wait for something to appear on a page.
pub const WAIT: Duration = Duration::from_secs(20);

/// The Chromium binary: `ATTEST_CHROMIUM`, or the Debian package's.
pub fn chromium() -> Option<PathBuf> {
    if let Ok(path) = std::env::var("ATTEST_CHROMIUM")
        && !path.is_empty()
    {
        return Some(PathBuf::from(path));
    }
    ["/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

struct Conn {
    sink: Mutex<Sink>,
    pending: std::sync::Mutex<HashMap<u64, oneshot::Sender<Value>>>,
    next: AtomicU64,
}

impl Conn {
    async fn call(&self, session: Option<&str>, method: &str, params: Value) -> Value {
        let id = self.next.fetch_add(1, Ordering::SeqCst);
        let (tx, rx) = oneshot::channel();
        self.pending.lock().expect("pending map lock").insert(id, tx);
        let mut msg = json!({ "id": id, "method": method, "params": params });
        if let Some(s) = session {
            msg["sessionId"] = json!(s);
        }
        self.sink.lock().await.send(Message::Text(msg.to_string().into())).await.expect("send to Chromium");
        let reply = tokio::time::timeout(Duration::from_secs(60), rx)
            .await
            .unwrap_or_else(|_| panic!("Chromium did not answer {method}"))
            .expect("Chromium connection open");
        if let Some(err) = reply.get("error") {
            panic!("{method} failed: {err}");
        }
        reply["result"].clone()
    }
}

pub struct Browser {
    child: Child,
    conn: Arc<Conn>,
    _profile: tempfile::TempDir,
}

impl Browser {
    pub async fn launch(binary: &Path) -> Browser {
        let profile = tempfile::tempdir().expect("profile directory");
        let mut child = Command::new(binary)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-dev-shm-usage",
                "--hide-scrollbars",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start Chromium");
        // Chromium prints the DevTools address on standard error; keep draining it afterwards so
        // that it never blocks on a full pipe.
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("DevTools listening on ").nth(1)
                    && let Some(tx) = tx.take()
                {
                    let _ = tx.send(rest.trim().to_owned());
                }
            }
        });
        let url = tokio::task::spawn_blocking(move || rx.recv_timeout(Duration::from_secs(60)))
            .await
            .expect("join")
            .expect("Chromium printed its DevTools address");
        let (ws, _) = tokio_tungstenite::connect_async(url.as_str()).await.expect("connect to Chromium");
        let (sink, mut stream) = ws.split();
        let conn = Arc::new(Conn {
            sink: Mutex::new(sink),
            pending: std::sync::Mutex::new(HashMap::new()),
            next: AtomicU64::new(1),
        });
        let reader = Arc::downgrade(&conn);
        tokio::spawn(async move {
            while let Some(Ok(msg)) = stream.next().await {
                let Message::Text(text) = msg else { continue };
                let Ok(value) = serde_json::from_str::<Value>(&text) else { continue };
                let Some(id) = value.get("id").and_then(Value::as_u64) else { continue };
                let Some(conn) = reader.upgrade() else { break };
                if let Some(tx) = conn.pending.lock().expect("pending map lock").remove(&id) {
                    let _ = tx.send(value);
                }
            }
        });
        Browser { child, conn, _profile: profile }
    }

    /// A new page in a browser context of its own, at the given size.
    pub async fn page(&self, width: u32, height: u32) -> Page {
        let ctx = self.conn.call(None, "Target.createBrowserContext", json!({ "disposeOnDetach": true })).await;
        let target = self
            .conn
            .call(
                None,
                "Target.createTarget",
                json!({ "url": "about:blank", "browserContextId": ctx["browserContextId"] }),
            )
            .await;
        let attached = self
            .conn
            .call(None, "Target.attachToTarget", json!({ "targetId": target["targetId"], "flatten": true }))
            .await;
        let session = attached["sessionId"].as_str().expect("session id").to_owned();
        let page = Page { conn: self.conn.clone(), session };
        page.call("Page.enable", json!({})).await;
        page.call("Runtime.enable", json!({})).await;
        page.call(
            "Emulation.setDeviceMetricsOverride",
            json!({ "width": width, "height": height, "deviceScaleFactor": 1, "mobile": false }),
        )
        .await;
        page
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub struct Page {
    conn: Arc<Conn>,
    session: String,
}

impl Page {
    pub async fn call(&self, method: &str, params: Value) -> Value {
        self.conn.call(Some(&self.session), method, params).await
    }

    pub async fn goto(&self, url: &str) {
        self.call("Page.navigate", json!({ "url": url })).await;
    }

    /// Evaluates a JavaScript expression (awaiting a promise) and returns its value.
    pub async fn eval(&self, expression: &str) -> Value {
        let result = self
            .call("Runtime.evaluate", json!({ "expression": expression, "awaitPromise": true, "returnByValue": true }))
            .await;
        if let Some(ex) = result.get("exceptionDetails") {
            return json!({ "__exception": ex.to_string() });
        }
        result["result"]["value"].clone()
    }

    /// Waits until the expression is truthy; panics with `what` and the page's text if it never is.
    pub async fn wait_for(&self, what: &str, expression: &str) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let v = self
                .eval(&format!("(() => {{ try {{ return !!({expression}); }} catch (e) {{ return false; }} }})()"))
                .await;
            if v == json!(true) {
                return;
            }
            if tokio::time::Instant::now() >= deadline {
                let text = self.eval("document.body ? document.body.innerText.slice(0, 2000) : ''").await;
                panic!("timed out waiting for {what}; the page shows:\n{}", text.as_str().unwrap_or(""));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Focuses the element the selector names.
    pub async fn focus(&self, selector: &str) {
        let found = self.eval(&format!("(() => {{ const el = document.querySelector({selector:?}); if (!el) return false; el.focus(); return true; }})()")).await;
        assert_eq!(found, json!(true), "no element {selector}");
    }

    /// Types text into the focused element, as a keyboard would.
    pub async fn type_text(&self, text: &str) {
        self.call("Input.insertText", json!({ "text": text })).await;
    }

    /// Focuses a field, selects what it holds and types over it.
    pub async fn fill(&self, selector: &str, text: &str) {
        self.focus(selector).await;
        self.eval(&format!(
            "document.querySelector({selector:?}).select && document.querySelector({selector:?}).select()"
        ))
        .await;
        self.type_text(text).await;
    }

    pub async fn click(&self, selector: &str) {
        let found = self.eval(&format!("(() => {{ const el = document.querySelector({selector:?}); if (!el) return false; el.click(); return true; }})()")).await;
        assert_eq!(found, json!(true), "no element {selector}");
    }

    pub async fn text(&self, selector: &str) -> String {
        self.eval(&format!("(document.querySelector({selector:?}) || {{}}).textContent || ''"))
            .await
            .as_str()
            .unwrap_or("")
            .to_owned()
    }

    /// With `ATTEST_SCREENSHOTS=1`, saves the page as `docs/screenshots/<name>.png`.
    pub async fn screenshot(&self, name: &str) {
        if std::env::var("ATTEST_SCREENSHOTS").as_deref() != Ok("1") {
            return;
        }
        // Let transitions and fonts settle.
        tokio::time::sleep(Duration::from_millis(400)).await;
        let shot =
            self.call("Page.captureScreenshot", json!({ "format": "png", "captureBeyondViewport": false })).await;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().expect("screenshot data"))
            .expect("base64 screenshot");
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/screenshots");
        std::fs::create_dir_all(&dir).expect("screenshot directory");
        std::fs::write(dir.join(format!("{name}.png")), bytes).expect("write screenshot");
    }
}
