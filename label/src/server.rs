//! The page's HTTP side, on localhost only: the page and its script (built
//! in, nothing fetched from elsewhere), a JSON API over the [`Store`], and
//! the pixels of frames and tiles.
//!
//! One request at a time: a decision is on disk before its answer leaves,
//! and decisions are applied in the order they arrive. Only the newest tab
//! that opened the page may write; an older one is told so (409) instead
//! of overwriting it.

use std::io::Read;
use std::sync::Arc;

use image::RgbImage;
use serde::Deserialize;
use serde_json::{json, Value};
use tiny_http::{Header, Method, Request, Response};

use crate::review::Review;
use crate::session::Cut;
use crate::store::Store;
use crate::{display, Error, Result};

const INDEX: &str = include_str!("page/index.html");
const SCRIPT: &str = include_str!("page/app.js");
const COMMON: &str = include_str!("page/common.js");
const STYLE: &str = include_str!("page/app.css");
const REVIEW_INDEX: &str = include_str!("page/review.html");
const REVIEW_SCRIPT: &str = include_str!("page/review.js");

/// Largest request body accepted (a decision is a few dozen bytes).
const MAX_BODY: u64 = 64 * 1024;

/// A bound server; [`Server::run`] answers until [`Stopper::stop`].
pub struct Server {
    http: Arc<tiny_http::Server>,
    app: App,
    url: String,
}

/// Stops a running [`Server`] from another thread.
#[derive(Clone)]
pub struct Stopper(Arc<tiny_http::Server>);

impl Stopper {
    pub fn stop(&self) {
        self.0.unblock();
    }
}

struct App {
    store: Store,
    /// The tab allowed to write (the newest to open the page).
    tab: Option<String>,
    /// The last image decoded for display.
    shown: Option<(usize, RgbImage)>,
    /// Review mode: the count results beside the frames; the store then
    /// holds the corrections.
    review: Option<Review>,
}

impl Server {
    /// Binds 127.0.0.1:`port` (0: any free port).
    pub fn bind(store: Store, port: u16) -> Result<Server> {
        let http = tiny_http::Server::http(("127.0.0.1", port)).map_err(|e| {
            Error::Input(format!(
                "cannot listen on 127.0.0.1:{port} ({e}); is another program using it? try --port 0"
            ))
        })?;
        let addr = http
            .server_addr()
            .to_ip()
            .ok_or_else(|| Error::Input("the server has no IP address".into()))?;
        Ok(Server {
            http: Arc::new(http),
            app: App {
                store,
                tab: None,
                shown: None,
                review: None,
            },
            url: format!("http://{addr}/"),
        })
    }

    /// Serves the review page for `review` (the store holds its
    /// corrections) instead of the labelling page.
    pub fn with_review(mut self, review: Review) -> Server {
        self.app.review = Some(review);
        self
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn stopper(&self) -> Stopper {
        Stopper(self.http.clone())
    }

    /// Answers requests until stopped; the folder's lock goes with `self`.
    pub fn run(mut self) {
        while let Ok(mut req) = self.http.recv() {
            let answer = self.app.answer(&mut req);
            let _ = req.respond(answer);
        }
    }
}

type Reply = Response<std::io::Cursor<Vec<u8>>>;

fn with_type(body: Vec<u8>, mime: &str, status: u16) -> Reply {
    Response::from_data(body)
        .with_status_code(status)
        .with_header(Header::from_bytes("Content-Type", mime).expect("ASCII header"))
        .with_header(Header::from_bytes("Cache-Control", "no-store").expect("ASCII header"))
}

fn json_reply(v: Value) -> Reply {
    with_type(v.to_string().into_bytes(), "application/json", 200)
}

fn error_reply(e: &Error) -> Reply {
    let status = match e {
        Error::Busy(_) => 409,
        Error::Input(_) | Error::Core(_) => 400,
        Error::Io { .. } => 500,
    };
    with_type(
        json!({ "error": e.to_string() }).to_string().into_bytes(),
        "application/json",
        status,
    )
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

impl App {
    fn answer(&mut self, req: &mut Request) -> Reply {
        let url = req.url().to_string();
        let (path, query) = url.split_once('?').unwrap_or((&url, ""));
        let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
        let got = match (req.method(), parts.as_slice()) {
            (Method::Get, [""]) => {
                let page = if self.review.is_some() {
                    REVIEW_INDEX
                } else {
                    INDEX
                };
                Ok(with_type(page.into(), "text/html; charset=utf-8", 200))
            }
            (Method::Get, ["app.js"]) => Ok(with_type(SCRIPT.into(), "text/javascript", 200)),
            (Method::Get, ["common.js"]) => Ok(with_type(COMMON.into(), "text/javascript", 200)),
            (Method::Get, ["review.js"]) => {
                Ok(with_type(REVIEW_SCRIPT.into(), "text/javascript", 200))
            }
            (Method::Get, ["img", "overlay", i]) => self.overlay(i, query),
            (Method::Get, ["app.css"]) => Ok(with_type(STYLE.into(), "text/css", 200)),
            (Method::Get, ["api", "state"]) => self.state().map(json_reply),
            (Method::Get, ["api", "plan"]) => self.plan(query).map(json_reply),
            (Method::Get, ["img", "frame", i]) => self.frame(i, query),
            (Method::Get, ["img", "unit", i, u]) => self.unit(i, u),
            (Method::Post, ["api", what]) => {
                let what = what.to_string();
                body(req).and_then(|b| self.post(&what, &b)).map(json_reply)
            }
            _ => Err(Error::Input(format!("no such page: {path}"))),
        };
        got.unwrap_or_else(|e| {
            if matches!(e, Error::Input(ref m) if m.starts_with("no such page")) {
                with_type(e.to_string().into_bytes(), "text/plain", 404)
            } else {
                error_reply(&e)
            }
        })
    }

    fn post(&mut self, what: &str, body: &[u8]) -> Result<Value> {
        let parse_err = |e: serde_json::Error| Error::Input(format!("bad request: {e}"));
        match what {
            "claim" => {
                let c: Claim = serde_json::from_slice(body).map_err(parse_err)?;
                self.tab = Some(c.tab);
                self.state()
            }
            "setup" => {
                let s: Setup = serde_json::from_slice(body).map_err(parse_err)?;
                self.check_tab(&s.tab)?;
                self.store.set_cut(Cut::parse(&s.cut)?)?;
                self.state()
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
        let rows = self.store.log.current();
        let complete = rows
            .values()
            .filter(|b| b.iter().all(Option::is_some))
            .count();
        json!({ "decisions": self.store.log.decisions.len(), "complete": complete })
    }

    fn state(&self) -> Result<Value> {
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
            "review": self.review.as_ref().map(Review::state),
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

    fn shown(&mut self, i: usize) -> Result<&RgbImage> {
        let img = self
            .store
            .images
            .get(i)
            .ok_or_else(|| Error::Input(format!("there is no image {i}")))?;
        if self.shown.as_ref().map(|s| s.0) != Some(i) {
            let rgb = display::rgb8(&img.path)?;
            self.shown = Some((i, rgb));
        }
        Ok(&self.shown.as_ref().expect("just decoded").1)
    }

    fn frame(&mut self, i: &str, query: &str) -> Result<Reply> {
        let i = index(i)?;
        let jpeg = display::preview_jpeg(self.shown(i)?, width(query))?;
        Ok(with_type(jpeg, "image/jpeg", 200))
    }

    /// The overlay `count` drew for image `i`, in review mode.
    fn overlay(&mut self, i: &str, query: &str) -> Result<Reply> {
        let i = index(i)?;
        let path = self
            .review
            .as_ref()
            .and_then(|r| r.overlays.get(i).cloned().flatten())
            .ok_or_else(|| Error::Input(format!("no such page: /img/overlay/{i}")))?;
        let jpeg = display::preview_jpeg(&display::rgb8(&path)?, width(query))?;
        Ok(with_type(jpeg, "image/jpeg", 200))
    }

    fn unit(&mut self, i: &str, u: &str) -> Result<Reply> {
        let (i, u) = (index(i)?, index(u)?);
        let unit = *self
            .store
            .units(i)?
            .get(u)
            .ok_or_else(|| Error::Input(format!("image {i} has no tile {u}")))?;
        if self.store.cut() == Some(Cut::Whole) {
            let jpeg = display::preview_jpeg(self.shown(i)?, 1024)?;
            return Ok(with_type(jpeg, "image/jpeg", 200));
        }
        let png = display::crop_png(self.shown(i)?, unit.x, unit.y, unit.width, unit.height)?;
        Ok(with_type(png, "image/png", 200))
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

fn body(req: &mut Request) -> Result<Vec<u8>> {
    let mut b = Vec::new();
    req.as_reader()
        .take(MAX_BODY + 1)
        .read_to_end(&mut b)
        .map_err(|e| Error::Input(format!("cannot read the request: {e}")))?;
    if b.len() as u64 > MAX_BODY {
        return Err(Error::Input("request too large".into()));
    }
    Ok(b)
}
