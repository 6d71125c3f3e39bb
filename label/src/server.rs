//! The pages' side of the server: the page and its script (built in,
//! nothing fetched from elsewhere), a JSON API over the [`Store`], and the
//! pixels of frames and tiles. Who may ask is `http`'s to decide.
//!
//! Writes are applied one at a time, in the order they arrive, and a
//! decision is on disk before its answer leaves. Pixels are made outside
//! that lock, so a large frame never delays a save. Only the newest tab
//! that opened the page may write; an older one is told so (409) instead
//! of overwriting it.

use std::sync::{Arc, Mutex, MutexGuard};

use serde::Deserialize;
use serde_json::{json, Value};

use crate::display::Cache;
use crate::http::{self, Handler, Limits, Listener, Reply, Request};
use crate::review::Review;
use crate::session::{Cut, ImageInfo};
use crate::store::Store;
use crate::{Error, Result};

const INDEX: &str = include_str!("page/index.html");
const SCRIPT: &str = include_str!("page/app.js");
const COMMON: &str = include_str!("page/common.js");
const STYLE: &str = include_str!("page/app.css");
const REVIEW_INDEX: &str = include_str!("page/review.html");
const REVIEW_SCRIPT: &str = include_str!("page/review.js");

/// Where the pages carry the session's token (`<meta>` in their head).
const TOKEN_MARK: &str = "@NEMASCOPE_TOKEN@";

/// A bound server; [`Server::run`] answers until [`Stopper::stop`].
pub struct Server {
    listener: Listener,
    app: Arc<App>,
    url: String,
}

/// Stops a running [`Server`] from another thread.
pub type Stopper = http::Stopper;

struct App {
    /// The store and the tab allowed to write; `None` once stopped.
    work: Mutex<Option<Work>>,
    /// The store's images (fixed for the session), for pixels without the lock.
    images: Vec<ImageInfo>,
    decoded: Cache,
    /// Review mode: the count results beside the frames; the store then
    /// holds the corrections.
    review: Option<Review>,
    token: String,
}

struct Work {
    store: Store,
    /// The tab allowed to write (the newest to open the page).
    tab: Option<String>,
}

impl Server {
    /// Binds 127.0.0.1:`port` (0: any free port).
    /// Writes carry the folder's token, kept across restarts so that an
    /// open tab's queued key presses still save ([`page_token`]).
    pub fn bind(store: Store, port: u16) -> Result<Server> {
        let token = page_token(&store.out)?;
        let listener = Listener::bind(port, Limits::default(), token).map_err(|e| {
            Error::Input(format!(
                "cannot listen on 127.0.0.1:{port} ({e}); is another program using it? try --port 0"
            ))
        })?;
        let url = format!("http://127.0.0.1:{}/", listener.port());
        Ok(Server {
            app: Arc::new(App {
                images: store.images.clone(),
                decoded: store.decoded.clone(),
                token: listener.token().to_string(),
                work: Mutex::new(Some(Work { store, tab: None })),
                review: None,
            }),
            listener,
            url,
        })
    }

    /// Serves the review page for `review` (the store holds its
    /// corrections) instead of the labelling page.
    pub fn with_review(mut self, review: Review) -> Server {
        Arc::get_mut(&mut self.app).expect("not yet running").review = Some(review);
        self
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn stopper(&self) -> Stopper {
        self.listener.stopper()
    }

    /// Answers requests until stopped; then the store (and the folder's
    /// lock) goes, once the write in progress, if any, is done.
    pub fn run(self) {
        self.listener.run(self.app.clone());
        drop(self.app.lock().take());
    }
}

/// The folder's page token (`.page-token`, readable by its owner only),
/// made on first use: a tab left open across a restart of the server keeps
/// saving, and a page from anywhere else never has it.
fn page_token(out: &std::path::Path) -> Result<String> {
    let path = out.join(".page-token");
    if let Ok(t) = std::fs::read_to_string(&path) {
        let t = t.trim();
        if t.len() == 32 && t.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(t.to_string());
        }
    }
    let t = http::new_token().map_err(|e| Error::io(&path, e))?;
    nemascope_core::files::write_atomic(&path, t.as_bytes())?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| Error::io(&path, e))?;
    }
    Ok(t)
}

fn json_reply(v: Value) -> Reply {
    Reply::new(200, "application/json", v.to_string())
}

fn error_reply(e: &Error) -> Reply {
    let status = match e {
        Error::Busy(_) => 409,
        Error::Input(m) if m.starts_with("no such page") => 404,
        Error::Input(_) | Error::Core(_) => 400,
        Error::Io { .. } => 500,
    };
    Reply::error(status, &e.to_string())
}

#[derive(Deserialize)]
struct Claim {
    tab: String,
}

#[derive(Deserialize)]
struct Setup {
    tab: String,
    cut: String,
}

#[derive(Deserialize)]
struct Decide {
    tab: String,
    image: usize,
    unit: usize,
    class: usize,
    present: bool,
}

impl Handler for App {
    fn answer(&self, req: &Request) -> Reply {
        let parts: Vec<&str> = req.path.trim_matches('/').split('/').collect();
        let q = req.query.as_str();
        let page = |html: &str| {
            Reply::new(
                200,
                "text/html; charset=utf-8",
                html.replace(TOKEN_MARK, &self.token),
            )
        };
        let got = match (req.method.as_str(), parts.as_slice()) {
            ("GET", [""]) if self.review.is_some() => Ok(page(REVIEW_INDEX)),
            ("GET", [""]) => Ok(page(INDEX)),
            ("GET", ["app.js"]) => Ok(Reply::new(200, "text/javascript", SCRIPT)),
            ("GET", ["common.js"]) => Ok(Reply::new(200, "text/javascript", COMMON)),
            ("GET", ["review.js"]) => Ok(Reply::new(200, "text/javascript", REVIEW_SCRIPT)),
            ("GET", ["app.css"]) => Ok(Reply::new(200, "text/css", STYLE)),
            ("GET", ["api", "state"]) => self.with_work(|w| w.state(self)).map(json_reply),
            ("GET", ["api", "plan"]) => self.with_work(|w| w.plan(q)).map(json_reply),
            ("GET", ["img", "frame", i]) => self.frame(i, q),
            ("GET", ["img", "overlay", i]) => self.overlay(i, q),
            ("GET", ["img", "unit", i, u]) => self.unit(i, u),
            ("POST", ["api", what]) => self
                .with_work(|w| w.post(self, what, &req.body))
                .map(json_reply),
            _ => Err(Error::Input(format!("no such page: {}", req.path))),
        };
        got.unwrap_or_else(|e| error_reply(&e))
    }
}

impl App {
    fn lock(&self) -> MutexGuard<'_, Option<Work>> {
        self.work.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn with_work<T>(&self, f: impl FnOnce(&mut Work) -> Result<T>) -> Result<T> {
        match self.lock().as_mut() {
            Some(w) => f(w),
            None => Err(Error::Busy("the server is stopping".into())),
        }
    }

    fn image(&self, i: &str) -> Result<(usize, &ImageInfo)> {
        let i = index(i)?;
        let img = self
            .images
            .get(i)
            .ok_or_else(|| Error::Input(format!("there is no image {i}")))?;
        Ok((i, img))
    }

    fn frame(&self, i: &str, query: &str) -> Result<Reply> {
        let (_, img) = self.image(i)?;
        let jpeg = self.decoded.get(&img.path)?.preview_jpeg(width(query))?;
        Ok(Reply::new(200, "image/jpeg", jpeg))
    }

    /// The overlay `count` drew for image `i`, in review mode.
    fn overlay(&self, i: &str, query: &str) -> Result<Reply> {
        let i = index(i)?;
        let path = self
            .review
            .as_ref()
            .and_then(|r| r.overlays.get(i).cloned().flatten())
            .ok_or_else(|| Error::Input(format!("no such page: /img/overlay/{i}")))?;
        let jpeg = crate::display::preview_file(&path, width(query))?;
        Ok(Reply::new(200, "image/jpeg", jpeg))
    }

    fn unit(&self, i: &str, u: &str) -> Result<Reply> {
        let (i, img) = self.image(i)?;
        let u = index(u)?;
        let (unit, cut) = self.with_work(|w| {
            let unit = *w
                .store
                .units(i)?
                .get(u)
                .ok_or_else(|| Error::Input(format!("image {i} has no tile {u}")))?;
            Ok((unit, w.store.cut()))
        })?;
        let d = self.decoded.get(&img.path)?;
        if cut == Some(Cut::Whole) {
            return Ok(Reply::new(200, "image/jpeg", d.preview_jpeg(1024)?));
        }
        let png = d.crop_png(unit.x, unit.y, unit.width, unit.height)?;
        Ok(Reply::new(200, "image/png", png))
    }
}

impl Work {
    fn post(&mut self, app: &App, what: &str, body: &[u8]) -> Result<Value> {
        let parse_err = |e: serde_json::Error| Error::Input(format!("bad request: {e}"));
        match what {
            "claim" => {
                let c: Claim = serde_json::from_slice(body).map_err(parse_err)?;
                self.tab = Some(c.tab);
                self.state(app)
            }
            "setup" => {
                let s: Setup = serde_json::from_slice(body).map_err(parse_err)?;
                self.check_tab(&s.tab)?;
                self.store.set_cut(Cut::parse(&s.cut)?)?;
                self.state(app)
            }
            "decide" => {
                let d: Decide = serde_json::from_slice(body).map_err(parse_err)?;
                self.check_tab(&d.tab)?;
                self.store.decide(d.image, d.unit, d.class, d.present)?;
                Ok(self.progress())
            }
            "undo" => {
                let c: Claim = serde_json::from_slice(body).map_err(parse_err)?;
                self.check_tab(&c.tab)?;
                let d = self.store.undo()?;
                let image = self.store.images.iter().position(|i| i.name == d.image);
                let unit = match image {
                    Some(i) => self
                        .store
                        .units(i)?
                        .iter()
                        .position(|u| u.x == d.x && u.y == d.y),
                    None => None,
                };
                // What the unit and class show now: an earlier decision, or none.
                let now = self
                    .store
                    .log
                    .current()
                    .get(&(d.image.clone(), d.x, d.y))
                    .and_then(|b| b[d.class]);
                let now = crate::session::mark(now).to_string();
                let mut v = self.progress();
                v["undone"] =
                    json!({ "image": image, "unit": unit, "class": d.class, "value": now });
                Ok(v)
            }
            _ => Err(Error::Input(format!("no such page: /api/{what}"))),
        }
    }

    /// A tab may write when it is the newest to have opened the page (or
    /// when none has since the server started: a tab kept open across a
    /// restart carries on).
    fn check_tab(&mut self, tab: &str) -> Result<()> {
        match &self.tab {
            Some(t) if t != tab => Err(Error::Busy(
                "this folder is now being labelled in another tab or window; this one no longer saves. Reload it to label here instead."
                    .into(),
            )),
            Some(_) => Ok(()),
            None => {
                self.tab = Some(tab.to_string());
                Ok(())
            }
        }
    }

    fn progress(&self) -> Value {
        let rows = self.store.rows();
        let complete = rows
            .values()
            .filter(|b| b.iter().all(Option::is_some))
            .count();
        json!({ "decisions": self.store.log.decisions.len(), "complete": complete })
    }

    fn state(&self, app: &App) -> Result<Value> {
        let s = &self.store;
        let current = s.log.current();
        let (units, decided) = match s.cut() {
            Some(cut) => (
                (0..s.images.len())
                    .map(|i| s.units(i))
                    .collect::<Result<Vec<_>>>()?,
                crate::session::marks(&current, &s.images, cut, s.settings.classes.len())?,
            ),
            None => (Vec::new(), Vec::new()),
        };
        let mut v = json!({
            "review": app.review.as_ref().map(Review::state),
            "folder": s.folder.display().to_string(),
            "out": s.out.display().to_string(),
            "classes": s.settings.classes,
            "cut": s.cut().map(Cut::name),
            "images": s.images,
            "units": units,
            "decided": decided,
            "warnings": s.warnings,
            "min_tile": crate::session::MIN_TILE,
        });
        v.as_object_mut()
            .expect("object")
            .extend(self.progress().as_object().expect("object").clone());
        Ok(v)
    }

    /// What a tile size would give, for the page's size chooser: the first
    /// image's tiles and the count over the folder, or why it cannot be.
    fn plan(&self, query: &str) -> Result<Value> {
        let cut = query
            .split('&')
            .find_map(|kv| kv.strip_prefix("cut="))
            .ok_or_else(|| Error::Input("give cut=SIZE".into()))?;
        let cut = Cut::parse(cut)?;
        let mut total = 0;
        let mut first = Vec::new();
        for (i, img) in self.store.images.iter().enumerate() {
            let us = crate::session::units(img, cut)?;
            total += us.len();
            if i == 0 {
                first = us;
            }
        }
        Ok(json!({ "cut": cut.name(), "first": first, "total": total }))
    }
}

/// The display width asked for with `w=` (default 1024 px).
fn width(query: &str) -> u32 {
    query
        .split('&')
        .find_map(|kv| kv.strip_prefix("w="))
        .and_then(|w| w.parse::<u32>().ok())
        .unwrap_or(1024)
        .clamp(64, 4096)
}

fn index(s: &str) -> Result<usize> {
    s.parse()
        .map_err(|_| Error::Input(format!("`{s}` is not an index")))
}
