//! Replays labelling decisions written down beforehand as key presses in
//! the page, in headless Chromium: one line per image, `NAME BITS…` with
//! one 0/1 per tile in the page's order (row by row), spaces ignored. Used
//! for docs/labelling.md: the decisions are a person's, the keys are sent
//! one per tile through the real page, and screenshots are written.
//!
//! cargo run --release -p nemascope-label --example replay -- \
//!     ../shared/data/nemaquant docs/labelling/nemaquant-egg.txt \
//!     --out docs/labelling/nemaquant-egg --tile 256 --class egg --shots docs/img

use std::path::PathBuf;
use std::time::{Duration, Instant};

use headless_chrome::protocol::cdp::Page::CaptureScreenshotFormatOption;
use headless_chrome::{Browser, LaunchOptions, Tab};
use nemascope_label::server::Server;
use nemascope_label::{Cut, Options, Store};

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn wait(tab: &Tab, condition: &str) {
    let start = Instant::now();
    while tab.evaluate(condition, false).unwrap().value != Some(serde_json::Value::Bool(true)) {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "timed out: {condition}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn shot(tab: &Tab, dir: &Option<PathBuf>, name: &str) {
    if let Some(dir) = dir {
        wait(
            tab,
            "[...document.images].every(i => i.complete || i.loading === 'lazy')",
        );
        std::fs::create_dir_all(dir).unwrap();
        let png = tab
            .capture_screenshot(CaptureScreenshotFormatOption::Png, None, None, true)
            .unwrap();
        std::fs::write(dir.join(name), png).unwrap();
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (folder, decisions) = (PathBuf::from(&args[0]), PathBuf::from(&args[1]));
    let cut = Cut::parse(&arg(&args, "--tile").unwrap_or_else(|| "256".into())).unwrap();
    let shots = arg(&args, "--shots").map(PathBuf::from);
    let store = Store::open(&Options {
        folder,
        out: arg(&args, "--out").map(PathBuf::from),
        classes: vec![arg(&args, "--class").unwrap_or_else(|| "egg".into())],
        cut: Some(cut),
        images: vec![],
        finer_of: None,
    })
    .unwrap();
    let server = Server::bind(store, 0).unwrap();
    let url = server.url().to_string();
    let stop = server.stopper();
    let join = std::thread::spawn(move || server.run());

    let text = std::fs::read_to_string(&decisions).unwrap();
    let bits: String = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .flat_map(|l| l.split_whitespace().skip(1))
        .collect();
    let chromium = std::env::var_os("NEMASCOPE_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium-headless-shell"));
    let browser = Browser::new(
        LaunchOptions::default_builder()
            .path(Some(chromium))
            .sandbox(false)
            .window_size(Some((1400, 1000)))
            .idle_browser_timeout(Duration::from_secs(300))
            .build()
            .unwrap(),
    )
    .unwrap();
    let tab = browser.new_tab().unwrap();
    tab.navigate_to(&url)
        .unwrap()
        .wait_until_navigated()
        .unwrap();
    tab.wait_for_element("#label:not([hidden])").unwrap();
    let start = Instant::now();
    for (k, b) in bits.chars().enumerate() {
        tab.press_key(if b == '1' { "y" } else { "n" }).unwrap();
        if k == 20 {
            wait(
                &tab,
                "document.getElementById('status').dataset.state === 'saved'",
            );
            shot(&tab, &shots, "label-nemaquant.png");
        }
    }
    wait(
        &tab,
        "document.getElementById('status').dataset.state === 'saved'",
    );
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{} key presses (one per tile) in {secs:.1} s through the page",
        bits.len()
    );
    stop.stop();
    join.join().unwrap();
}
