//! The labelling page in a real browser: headless Chromium (installed by
//! scripts/setup.sh) driven over the DevTools protocol, key press by key
//! press. Screenshots go to target/screenshots/ to be looked at.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use headless_chrome::protocol::cdp::Page::CaptureScreenshotFormatOption;
use headless_chrome::{Browser, LaunchOptions, Tab};
use nemascope_label::server::{Server, Stopper};
use nemascope_label::{Cut, Options, Store};

/// The headless Chromium to drive: `$NEMASCOPE_CHROMIUM`, or the Debian
/// packages' binaries. Missing is a failure, not a skip: set-up installs it.
fn chromium() -> PathBuf {
    if let Some(p) = std::env::var_os("NEMASCOPE_CHROMIUM") {
        return PathBuf::from(p);
    }
    for name in ["chromium-headless-shell", "chromium"] {
        for dir in std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()) {
            let p = dir.join(name);
            if p.is_file() {
                return p;
            }
        }
    }
    panic!("no headless Chromium on PATH: scripts/setup.sh installs the Debian package chromium-headless-shell");
}

fn browser() -> Browser {
    browser_with(&[])
}

fn browser_with(args: &[&str]) -> Browser {
    let args: Vec<&std::ffi::OsStr> = args.iter().map(std::ffi::OsStr::new).collect();
    Browser::new(
        LaunchOptions::default_builder()
            .path(Some(chromium()))
            .sandbox(false)
            .window_size(Some((1400, 1000)))
            .idle_browser_timeout(Duration::from_secs(120))
            .args(args)
            .build()
            .unwrap(),
    )
    .unwrap()
}

struct Running {
    url: String,
    stop: Stopper,
    join: JoinHandle<()>,
}

/// A labelling of `dir`'s images for egg, into `out` (default: inside it).
fn egg_tiles(dir: &Path, out: Option<PathBuf>, cut: Cut) -> Options {
    Options {
        folder: dir.to_path_buf(),
        out,
        classes: vec!["egg".into()],
        cut: Some(cut),
        images: vec![],
        finer_of: None,
    }
}

fn serve(opts: &Options) -> Running {
    serve_on(opts, 0)
}

fn serve_on(opts: &Options, port: u16) -> Running {
    let server = Server::bind(Store::open(opts).unwrap(), port).unwrap();
    let url = server.url().to_string();
    let stop = server.stopper();
    Running {
        url,
        stop,
        join: std::thread::spawn(move || server.run()),
    }
}

impl Running {
    fn stop(self) {
        self.stop.stop();
        self.join.join().unwrap();
    }
}

/// A folder of `n` RGB frames `w`×`h` with dark ellipses ("eggs") and thin
/// lines ("debris"), so the screenshots show something to judge.
fn frames(n: usize, w: u32, h: u32) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for k in 0..n {
        let eggs: Vec<(f32, f32)> = (0..6)
            .map(|j| {
                let t = (k * 7 + j * 13) as f32;
                ((t * 37.0) % w as f32, (t * 23.0) % h as f32)
            })
            .collect();
        let img = image::RgbImage::from_fn(w, h, |x, y| {
            let (xf, yf) = (x as f32, y as f32);
            let egg = eggs
                .iter()
                .any(|&(cx, cy)| ((xf - cx) / 14.0).powi(2) + ((yf - cy) / 9.0).powi(2) < 1.0);
            let debris = (x + 2 * y + 5 * k as u32) % 97 < 2;
            let v = if egg {
                60
            } else if debris {
                150
            } else {
                225
            };
            image::Rgb([v, v, (v as u32 + 20).min(255) as u8])
        });
        img.save(dir.path().join(format!("frame{k:02}.png")))
            .unwrap();
    }
    dir
}

fn wait(tab: &Tab, condition: &str, what: impl std::fmt::Display) {
    let start = Instant::now();
    loop {
        let v = tab.evaluate(condition, false).unwrap().value;
        if v == Some(serde_json::Value::Bool(true)) {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until the page says every decision is on disk.
fn saved(tab: &Tab) {
    wait(
        tab,
        "document.getElementById('status').dataset.state === 'saved'",
        "all decisions saved",
    );
}

fn text(tab: &Tab, id: &str) -> String {
    tab.evaluate(
        &format!("document.getElementById('{id}').textContent"),
        false,
    )
    .unwrap()
    .value
    .and_then(|v| v.as_str().map(str::to_string))
    .unwrap_or_default()
}

fn screenshot(tab: &Tab, name: &str) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    // Let the tile images arrive first.
    wait(
        tab,
        "[...document.images].every(i => i.complete || i.loading === 'lazy')",
        "images loaded",
    );
    let png = tab
        .capture_screenshot(CaptureScreenshotFormatOption::Png, None, None, true)
        .unwrap();
    std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
}

fn keys(tab: &Tab, keys: &[&str]) {
    for k in keys {
        tab.press_key(k).unwrap();
    }
}

fn open(browser: &Browser, url: &str) -> Arc<Tab> {
    let tab = browser.new_tab().unwrap();
    tab.navigate_to(url)
        .unwrap()
        .wait_until_navigated()
        .unwrap();
    tab
}

#[test]
fn keys_label_tiles_across_a_restart_and_undo_into_labels_csv() {
    let dir = frames(2, 256, 192);
    let out = dir.path().join("labels");
    let opts = Options {
        folder: dir.path().to_path_buf(),
        out: Some(out.clone()),
        classes: vec!["egg".into()],
        cut: None,
        images: vec![],
        finer_of: None,
    };
    let server = serve(&opts);
    let browser = browser();
    let tab = open(&browser, &server.url);

    // Choose 64 px tiles on the page, from the keyboard (the size field
    // has the focus, its value selected).
    tab.wait_for_element("#setup:not([hidden])").unwrap();
    tab.type_str("64").unwrap();
    wait(
        &tab,
        "document.getElementById('plan').textContent.startsWith('12 tiles')",
        "the plan for 64 px tiles",
    );
    screenshot(&tab, "label-setup");
    keys(&tab, &["Enter"]);
    tab.wait_for_element("#label:not([hidden])").unwrap();

    // Five decisions with one key each.
    keys(&tab, &["y", "n", "n", " ", "y"]);
    saved(&tab);
    assert!(
        text(&tab, "status").contains("5 decisions"),
        "{}",
        text(&tab, "status")
    );

    // The server stops and starts again (resuming from disk); the page is
    // reloaded and carries on at the first undecided tile.
    server.stop();
    let server = serve(&Options {
        classes: vec![],
        ..opts.clone()
    });
    tab.navigate_to(&server.url)
        .unwrap()
        .wait_until_navigated()
        .unwrap();
    tab.wait_for_element("#label:not([hidden])").unwrap();
    wait(
        &tab,
        "document.getElementById('current-caption').textContent.includes('tile 6 of 12')",
        "resume at the sixth tile",
    );
    // Present by mistake, undone, then absent; then the rest of the image.
    keys(&tab, &["n", "y", "u", "n"]);
    keys(&tab, &["n"; 5]);
    saved(&tab);
    screenshot(&tab, "label-tiles");

    let labels = std::fs::read_to_string(out.join("labels.csv")).unwrap();
    let mut want = String::from("image,egg\n");
    let bits = [1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0];
    let corners = [0, 64, 128, 192];
    for (k, b) in bits.iter().enumerate() {
        let (x, y) = (corners[k % 4], corners[k / 4]);
        want.push_str(&format!("tiles/frame00.png_x{x:04}_y{y:04}.png,{b}\n"));
    }
    assert_eq!(labels, want);
    // The trainer's reader takes the table as it is.
    let ds = nemascope_core::dataset::generic::read(&out).unwrap();
    assert_eq!(ds.samples.len(), 12);
    assert!(ds.samples[0].present[0] && !ds.samples[1].present[0]);
    let log = std::fs::read_to_string(out.join("decisions.csv")).unwrap();
    assert_eq!(log.lines().count(), 1 + 12, "{log}");
    // The next image's first tile is current after the last of the first.
    assert!(text(&tab, "current-caption").starts_with("frame01.png · tile 1 of 12"));
    server.stop();
}

#[test]
fn a_second_tab_takes_over_and_the_first_one_no_longer_saves() {
    let dir = frames(1, 128, 128);
    let opts = Options {
        folder: dir.path().to_path_buf(),
        out: None,
        classes: vec!["egg".into(), "worm".into()],
        cut: Some(Cut::Tile(64)),
        images: vec![],
        finer_of: None,
    };
    let server = serve(&opts);
    let browser = browser();
    let first = open(&browser, &server.url);
    first.wait_for_element("#label:not([hidden])").unwrap();
    keys(&first, &["y"]);
    saved(&first);
    let second = open(&browser, &server.url);
    second.wait_for_element("#label:not([hidden])").unwrap();
    keys(&first, &["y"]);
    wait(
        &first,
        "!document.getElementById('banner').hidden",
        "the first tab told it no longer saves",
    );
    assert!(
        text(&first, "banner").contains("another tab"),
        "{}",
        text(&first, "banner")
    );
    screenshot(&first, "label-second-tab");
    // Two classes: the table has a row only once both are decided.
    let labels = dir.path().join("nemascope-labels/labels.csv");
    assert_eq!(
        std::fs::read_to_string(&labels).unwrap(),
        "image,egg,worm\n"
    );
    keys(&second, &["Tab", "ArrowLeft", "n", "Tab"]);
    saved(&second);
    assert_eq!(
        std::fs::read_to_string(&labels).unwrap(),
        "image,egg,worm\ntiles/frame00.png_x0000_y0000.png,1,0\n"
    );
    server.stop();
}

/// A finer labelling of images labelled before at twice the tile: the
/// tiles inside absent coarse tiles come decided, and each key goes on to
/// the next tile still open, past them.
#[test]
fn a_finer_labelling_asks_only_inside_the_present_coarse_tiles() {
    let dir = frames(1, 256, 128);
    let coarse = dir.path().join("coarse");
    {
        // 128 px: left tile absent, right tile present.
        let mut s =
            Store::open(&egg_tiles(dir.path(), Some(coarse.clone()), Cut::Tile(128))).unwrap();
        s.decide(0, 0, 0, false).unwrap();
        s.decide(0, 1, 0, true).unwrap();
    }
    let out = dir.path().join("fine");
    let server = serve(&Options {
        finer_of: Some(coarse),
        ..egg_tiles(dir.path(), Some(out.clone()), Cut::Tile(64))
    });
    let browser = browser();
    let tab = open(&browser, &server.url);
    tab.wait_for_element("#label:not([hidden])").unwrap();
    // 64 px: x 0, 64, 128, 192 on two rows; the x 0 and 64 tiles lie in
    // the absent coarse tile. The page opens on the first open tile.
    wait(
        &tab,
        "document.getElementById('current-caption').textContent.includes('tile 3 of 8')",
        "the first tile still open",
    );
    keys(&tab, &["y", "n"]);
    wait(
        &tab,
        "document.getElementById('current-caption').textContent.includes('tile 7 of 8')",
        "the next open tile, past the two decided ones",
    );
    keys(&tab, &["n", "y"]);
    saved(&tab);
    let labels = std::fs::read_to_string(out.join("labels.csv")).unwrap();
    let mut want = String::from("image,egg\n");
    for (k, b) in [0, 0, 1, 0, 0, 0, 0, 1].iter().enumerate() {
        let (x, y) = (64 * (k % 4), 64 * (k / 4));
        want.push_str(&format!("tiles/frame00.png_x{x:04}_y{y:04}.png,{b}\n"));
    }
    assert_eq!(labels, want);
    assert!(
        text(&tab, "status").contains("8 decisions"),
        "{}",
        text(&tab, "status")
    );
    server.stop();
}

/// The keyboard path end to end at machine speed: 510 tiles, one key each,
/// every decision on disk. Prints the rate, which is the test driver's: it
/// holds its DevTools socket up to 100 ms per call, two calls a key, while
/// the page's key handler takes ~3 ms and the server's save ~17 ms
/// (docs/labelling.md). A person is the limit, not the page.
#[test]
fn a_scripted_run_labels_over_five_hundred_tiles_one_key_each() {
    let dir = frames(1, 1536, 1024);
    let opts = egg_tiles(dir.path(), None, Cut::Tile(48));
    let server = serve(&opts);
    let browser = browser();
    let tab = open(&browser, &server.url);
    tab.wait_for_element("#label:not([hidden])").unwrap();
    let n = 510;
    let start = Instant::now();
    for k in 0..n {
        keys(&tab, &[if k % 7 == 0 { "y" } else { "n" }]);
    }
    saved(&tab);
    let secs = start.elapsed().as_secs_f64();
    println!(
        "scripted labelling: {n} tiles in {secs:.1} s ({:.0} tiles per 10 minutes)",
        n as f64 / secs * 600.0
    );
    let labels = std::fs::read_to_string(dir.path().join("nemascope-labels/labels.csv")).unwrap();
    let rows: Vec<&str> = labels.lines().skip(1).collect();
    assert_eq!(rows.len(), n);
    for (k, row) in rows.iter().enumerate() {
        assert!(
            row.ends_with(if k % 7 == 0 { ",1" } else { ",0" }),
            "row {k}: {row}"
        );
    }
    server.stop();
}

#[test]
fn whole_image_mode_labels_each_image_once_by_its_own_path() {
    let dir = frames(3, 96, 64);
    let server = serve(&egg_tiles(dir.path(), None, Cut::Whole));
    let browser = browser();
    let tab = open(&browser, &server.url);
    tab.wait_for_element("#label:not([hidden])").unwrap();
    keys(&tab, &["y", "n", "ArrowLeft", "y"]);
    saved(&tab);
    wait(
        &tab,
        "document.getElementById('frame').getAttribute('src') === '/img/frame/2?w=768'",
        "the frame view showing the current image",
    );
    screenshot(&tab, "label-whole");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("nemascope-labels/labels.csv")).unwrap(),
        "image,egg\n../frame00.png,1\n../frame01.png,1\n"
    );
    // The table is read as the trainer reads it, paths relative to it.
    let ds = nemascope_core::dataset::generic::read(&dir.path().join("nemascope-labels")).unwrap();
    assert_eq!(
        ds.samples[1].image,
        dir.path().join("nemascope-labels/../frame01.png")
    );
    server.stop();
}

/// The review page: a count's results beside the frames, the training
/// labels, the lab database; corrections marked with keys land as rows in
/// their own folder, and neither the labels nor the images change.
#[test]
fn review_marks_become_label_rows_in_their_own_folder() {
    use nemascope_label::review::{self, ReviewOptions};
    use nemascope_reports::counts::{samples, CountRun, ImageReport, ObjectReport};
    let dir = frames(2, 192, 128);
    let images: Vec<PathBuf> = (0..2)
        .map(|k| dir.path().join(format!("frame{k:02}.png")))
        .collect();
    // The labels the model was trained from: 64 px tiles, some decided.
    let labels = dir.path().join("labels");
    {
        let mut s = Store::open(&Options {
            folder: dir.path().to_path_buf(),
            out: Some(labels.clone()),
            classes: vec!["egg".into()],
            cut: Some(Cut::Tile(64)),
            images: vec![],
            finer_of: None,
        })
        .unwrap();
        for (u, present) in [(0, true), (1, false), (2, true)] {
            s.decide(0, u, 0, present).unwrap();
        }
    }
    let labels_before = std::fs::read(labels.join("labels.csv")).unwrap();
    // What `count --json --overlays` wrote: 3 eggs in frame00 (two in its
    // first tile), none in frame01.
    let obj = |x, y| ObjectReport {
        class: "egg".into(),
        count: 1,
        area_um2: 700.0,
        length_um: 40.0,
        width_um: 20.0,
        x,
        y,
        score: None,
    };
    let counted = vec![
        ImageReport {
            image: images[0].display().to_string(),
            sample: "plot-7".into(),
            counts: vec![3],
            objects: vec![obj(10.0, 10.0), obj(50.0, 40.0), obj(150.0, 100.0)],
            ms: 5.0,
        },
        ImageReport {
            image: images[1].display().to_string(),
            sample: "plot-7".into(),
            counts: vec![0],
            objects: vec![],
            ms: 5.0,
        },
    ];
    let run = CountRun {
        model: "egg-model".into(),
        classes: vec!["egg".into()],
        um_per_px: 2.0,
        samples: samples(&counted),
        images: counted,
        failed: vec![],
    };
    let json = dir.path().join("counts.json");
    std::fs::write(&json, serde_json::to_vec(&run).unwrap()).unwrap();
    let overlays = dir.path().join("overlays");
    std::fs::create_dir_all(&overlays).unwrap();
    image::RgbImage::from_pixel(192, 128, image::Rgb([90, 30, 30]))
        .save(overlays.join("frame00.png"))
        .unwrap();
    // A unit's reports in the lab database.
    let db = dir.path().join("lab.sqlite");
    let mut unit = nemascope_reports::ReportDb::open(&db, "bench-1").unwrap();
    for seq in 1..=2 {
        unit.append(nemascope_reports::StoredReport {
            seq,
            time_ms: seq * 1000,
            sample: "plot-7".into(),
            counts: vec![nemascope_reports::ClassCount {
                class: "egg".into(),
                count: 4,
            }],
            frame_ms: 40,
            warnings: 0,
            received_ms: seq * 1000 + 5,
        })
        .unwrap();
    }
    drop(unit);

    let out = dir.path().join("corrections");
    let opts = ReviewOptions {
        counts: json.clone(),
        images: None,
        overlays: Some(overlays),
        labels: Some(labels.clone()),
        db: Some(db),
        out: out.clone(),
        cut: None,
    };
    // Corrections never go into the labels' folder.
    let e = review::open(&ReviewOptions {
        out: labels.clone(),
        ..opts.clone()
    })
    .err()
    .unwrap()
    .to_string();
    assert!(e.contains("folder of their own"), "{e}");
    let (store, rv) = review::open(&opts).unwrap();
    let server = Server::bind(store, 0).unwrap().with_review(rv);
    let url = server.url().to_string();
    let stop = server.stopper();
    let join = std::thread::spawn(move || server.run());

    let browser = browser();
    let tab = open(&browser, &url);
    saved(&tab);
    assert!(
        text(&tab, "samples").contains("plot-723"),
        "{}",
        text(&tab, "samples")
    );
    assert!(
        text(&tab, "db-samples").contains("bench-1plot-728"),
        "{}",
        text(&tab, "db-samples")
    );
    // Against the labels: tile 1 labelled absent, nothing counted there;
    // tile 2 labelled present, nothing counted there.
    assert!(
        text(&tab, "checks").contains("all0 of 1 (0 %)1 of 2 (50 %)"),
        "{}",
        text(&tab, "checks")
    );
    assert!(
        text(&tab, "tile-caption").contains("counted 2 here · trained as present"),
        "{}",
        text(&tab, "tile-caption")
    );
    // Tile 0 of frame00: the model counted 2, there is none (N). Tile 1:
    // missed (Y), then undone (U) and marked absent (N). frame01 tile 3:
    // missed (Y).
    keys(&tab, &["n", "ArrowRight", "y", "u"]);
    saved(&tab);
    keys(&tab, &["n", "PageDown", "ArrowDown", "y"]);
    saved(&tab);
    assert_eq!(text(&tab, "correction"), "present");
    assert!(text(&tab, "no-overlay").contains("--overlays"));
    keys(&tab, &["PageUp"]);
    screenshot(&tab, "review");
    stop.stop();
    join.join().unwrap();

    assert_eq!(
        std::fs::read_to_string(out.join("labels.csv")).unwrap(),
        "image,egg\ntiles/frame00.png_x0000_y0000.png,0\ntiles/frame00.png_x0064_y0000.png,0\ntiles/frame01.png_x0000_y0064.png,1\n"
    );
    assert!(out.join("tiles/frame01.png_x0000_y0064.png").is_file());
    assert_eq!(
        std::fs::read(labels.join("labels.csv")).unwrap(),
        labels_before
    );
}

/// A web site on another origin (its own port), serving `html` to every
/// request: what a lab PC's browser may have open beside the page.
fn hostile_site(html: String) -> String {
    use std::io::{Read, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://127.0.0.1:{}/", l.local_addr().unwrap().port());
    std::thread::spawn(move || {
        for s in l.incoming().take(50) {
            let Ok(mut s) = s else { continue };
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{html}",
                html.len()
            );
        }
    });
    url
}

fn port_of(url: &str) -> u16 {
    url.trim_end_matches('/')
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap()
}

/// A page on another origin claims the session, undoes and decides with
/// `no-cors` fetches carrying text/plain JSON, and posts text/plain and
/// urlencoded forms: nothing changes, and the labelling tab keeps saving.
#[test]
fn another_web_site_cannot_claim_undo_or_decide() {
    let dir = frames(1, 192, 128);
    let out = dir.path().join("labels");
    let server = serve(&egg_tiles(dir.path(), Some(out.clone()), Cut::Tile(64)));
    let browser = browser();
    let tab = open(&browser, &server.url);
    tab.wait_for_element("#label:not([hidden])").unwrap();
    keys(&tab, &["y", "n", "y"]);
    saved(&tab);
    let (log, labels) = (
        read(&out.join("decisions.csv")),
        read(&out.join("labels.csv")),
    );
    assert_eq!(log.lines().count(), 4, "{log}");

    let target = server.url.trim_end_matches('/');
    let html = format!(
        r#"<!doctype html><body>
<form id="f1" method="POST" action="{target}/api/claim" enctype="text/plain" target="s1"><input name='{{"tab":"evil","x":"' value='"}}'></form>
<form id="f2" method="POST" action="{target}/api/undo" enctype="application/x-www-form-urlencoded" target="s2"><input name="tab" value="evil"></form>
<iframe name="s1"></iframe><iframe name="s2"></iframe>
<script>
const send = (p, b) => fetch("{target}" + p, {{ method: "POST", mode: "no-cors",
  headers: {{ "Content-Type": "text/plain" }}, body: JSON.stringify(b) }}).catch(() => {{}});
(async () => {{
  await send("/api/claim", {{ tab: "evil" }});
  for (let i = 0; i < 20; i++) await send("/api/undo", {{ tab: "evil" }});
  await send("/api/decide", {{ tab: "evil", image: 0, unit: 0, class: 0, present: false }});
  await send("/api/setup", {{ tab: "evil", cut: "32" }});
  document.getElementById("f1").submit();
  document.getElementById("f2").submit();
  setTimeout(() => {{ document.title = "done"; }}, 1500);
}})();
</script></body>"#
    );
    let evil = hostile_site(html);
    let attacker = open(&browser, &evil);
    wait(
        &attacker,
        "document.title === 'done'",
        "the hostile page's requests",
    );
    assert_eq!(read(&out.join("decisions.csv")), log);
    assert_eq!(read(&out.join("labels.csv")), labels);
    // The labelling tab still holds the session and saves.
    keys(&tab, &["n"]);
    saved(&tab);
    assert!(
        text(&tab, "status").contains("4 decisions"),
        "{}",
        text(&tab, "status")
    );
    assert!(read(&out.join("decisions.csv")).starts_with(&log));
    server.stop();
}

/// A page on a name that DNS points at 127.0.0.1 (rebinding) gets neither
/// the page nor the state.
#[test]
fn a_rebound_host_name_is_refused() {
    let dir = frames(1, 128, 128);
    let server = serve(&egg_tiles(dir.path(), None, Cut::Tile(64)));
    let browser = browser_with(&["--host-resolver-rules=MAP evil.example 127.0.0.1"]);
    let port = port_of(&server.url);
    let tab = open(&browser, &format!("http://evil.example:{port}/"));
    let body = tab
        .evaluate("document.body.innerText", false)
        .unwrap()
        .value
        .unwrap();
    let body = body.as_str().unwrap();
    assert!(body.contains("answers only http://127.0.0.1"), "{body}");
    assert!(!body.contains(&dir.path().display().to_string()), "{body}");
    let state = tab
        .evaluate(
            "fetch('/api/state').then(r => r.status + ' ' + r.headers.get('content-type'))",
            true,
        )
        .unwrap()
        .value
        .unwrap();
    assert_eq!(state.as_str().unwrap(), "421 application/json");
    server.stop();
}

/// The server stops with key presses still coming: the one pressed while
/// it is down is sent again until it is back, the next waits behind it,
/// and every decision lands in order.
#[test]
fn a_key_pressed_while_the_server_restarts_is_not_lost() {
    let dir = frames(1, 192, 128);
    let out = dir.path().join("labels");
    let opts = egg_tiles(dir.path(), Some(out.clone()), Cut::Tile(64));
    let server = serve(&opts);
    let port = port_of(&server.url);
    let browser = browser();
    let tab = open(&browser, &server.url);
    tab.wait_for_element("#label:not([hidden])").unwrap();
    keys(&tab, &["y", "n"]);
    saved(&tab);
    server.stop();
    keys(&tab, &["y"]);
    wait(
        &tab,
        "document.getElementById('status').dataset.state === 'retrying'",
        "the page saying the key press is not saved yet",
    );
    assert!(
        text(&tab, "banner").contains("not saved yet"),
        "{}",
        text(&tab, "banner")
    );
    screenshot(&tab, "label-server-down");
    let server = serve_on(
        &Options {
            classes: vec![],
            ..opts.clone()
        },
        port,
    );
    keys(&tab, &["n"]);
    saved(&tab);
    assert_eq!(
        read(&out.join("decisions.csv")),
        "image,x,y,class,present\nframe00.png,0,0,egg,1\nframe00.png,64,0,egg,0\nframe00.png,128,0,egg,1\nframe00.png,0,64,egg,0\n"
    );
    wait(
        &tab,
        "document.getElementById('banner').hidden",
        "the banner cleared",
    );
    assert!(
        text(&tab, "status").contains("4 decisions"),
        "{}",
        text(&tab, "status")
    );
    server.stop();
}

/// A local client that stalls an upload, and one that pipelines frame
/// requests and never reads them, do not delay the labelling tab's saves.
#[test]
fn a_stalled_upload_does_not_delay_the_next_save() {
    use std::io::Write;
    let dir = frames(1, 1024, 768);
    let out = dir.path().join("labels");
    let server = serve(&egg_tiles(dir.path(), Some(out.clone()), Cut::Tile(64)));
    let port = port_of(&server.url);
    let browser = browser();
    let tab = open(&browser, &server.url);
    tab.wait_for_element("#label:not([hidden])").unwrap();
    keys(&tab, &["y"]);
    saved(&tab);
    let token = read(&out.join(".page-token"));
    let own = format!("127.0.0.1:{port}");
    let mut stalled = std::net::TcpStream::connect(&own).unwrap();
    write!(
        stalled,
        "POST /api/decide HTTP/1.1\r\nHost: {own}\r\nOrigin: http://{own}\r\nContent-Type: application/json\r\nX-Nemascope-Token: {token}\r\nContent-Length: 2000\r\n\r\n0123456789"
    )
    .unwrap();
    let mut greedy = std::net::TcpStream::connect(&own).unwrap();
    for _ in 0..60 {
        write!(
            greedy,
            "GET /img/frame/0?w=4096 HTTP/1.1\r\nHost: {own}\r\n\r\n"
        )
        .unwrap();
    }
    let mut slow = Vec::new();
    for _ in 0..10 {
        let mut s = std::net::TcpStream::connect(&own).unwrap();
        write!(s, "GET /api/state HTTP/1.1\r\nHost: {own}\r\n").unwrap();
        slow.push(s);
    }
    std::thread::sleep(Duration::from_millis(200));
    let mut worst = Duration::ZERO;
    for k in ["n", "y", "n"] {
        let t = Instant::now();
        keys(&tab, &[k]);
        saved(&tab);
        worst = worst.max(t.elapsed());
    }
    println!("key press to saved, with a stalled upload open: at most {worst:?}");
    assert!(worst < Duration::from_secs(1), "{worst:?}");
    assert_eq!(read(&out.join("decisions.csv")).lines().count(), 5);
    drop((stalled, greedy, slow));
    server.stop();
}
