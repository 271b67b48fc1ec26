//! `penwatch report` read as a reviewer reads it: the HTML page opened in headless Chromium
//! (Debian `chromium`), its DOM checked for what a reviewer must see, a screenshot taken and
//! the page printed to PDF. Set `PENWATCH_KEEP_REPORT=DIR` to keep the page, the screenshot
//! and the PDF.

use std::path::Path;
use std::process::{Command, Output};

use penwatch_proto::v1::{DeviceClass, Zone};
use penwatch_tests::api::{REVIEWER, Setup};

const POLICY: &str = r#"
[[operators]]
id = "op-c01-1"
clinic = "c01"
qualification = "aesthetic_practitioner"

[[operators]]
id = "op-c01-2"
clinic = "c01"
qualification = "clinician"

[zones.c01]
periorbital = 0.5
"#;

fn penwatch(setup: &Setup, args: &[&str]) -> Output {
    let cli = penwatch_tests::binary("penwatch").expect("penwatch built");
    Command::new(cli)
        .args(args)
        .env("PENWATCH_GATEWAY", &setup.api)
        .env("PENWATCH_TOKEN", REVIEWER)
        .output()
        .expect("run penwatch")
}

/// Headless Chromium on `page` with these extra arguments, in a profile of its own, with
/// nothing to fetch; stdout.
fn chromium(page: &Path, profile: &Path, args: &[String]) -> String {
    let mut cmd = Command::new("timeout");
    cmd.arg("120")
        .arg("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--host-resolver-rules=MAP * ~NOTFOUND",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(format!("file://{}", page.display()));
    let out = cmd
        .output()
        .expect("chromium runs (Debian package chromium: scripts/install-deps)");
    assert!(
        out.status.success(),
        "chromium {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reviewer_reads_the_period_report_in_a_browser() {
    let mut setup = Setup::start_with_policy(POLICY).await;
    // An aesthetic practitioner (1.0 mm) on a medical pen: 0.7 mm around the eyes (zone limit
    // 0.5) and 1.1 mm on the cheek (operator limit 1.0).
    let mut exceeding: Vec<(f64, Zone)> = (0..30)
        .map(|i| (0.25 + f64::from(i % 6) * 0.05, Zone::Periorbital))
        .collect();
    exceeding.extend([(0.7, Zone::Periorbital), (0.45, Zone::Periorbital)]);
    exceeding.extend((0..20).map(|i| (0.6 + f64::from(i % 4) * 0.1, Zone::Cheek)));
    exceeding.extend([(1.1, Zone::Cheek), (0.8, Zone::Cheek)]);
    setup
        .session_in_zones(
            "c01",
            "pen-a",
            DeviceClass::Medical,
            "op-c01-1",
            "s-exceeded",
            &exceeding,
        )
        .await;
    setup
        .session(
            "c01",
            "pen-c",
            DeviceClass::Medical,
            "op-c01-2",
            "s-within",
            &[1.0, 1.5, 2.0, 1.5],
        )
        .await;
    setup
        .session(
            "c02",
            "pen-b",
            DeviceClass::Medical,
            "op-c02-1",
            "s-other",
            &[3.0],
        )
        .await;
    setup.wait_committed();
    let signed = penwatch(
        &setup,
        &[
            "review",
            "sign",
            "--clinic",
            "c01",
            "--from",
            "1d",
            "--until",
            "2100-01-01",
            "--meaning",
            "reviewed",
            "--signer",
            "Dr Ada Reviewer",
        ],
    );
    assert!(
        signed.status.success(),
        "{}",
        String::from_utf8_lossy(&signed.stderr)
    );

    let out = penwatch(
        &setup,
        &[
            "report",
            "--clinic",
            "c01",
            "--from",
            "1d",
            "--until",
            "2100-01-01",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let html = String::from_utf8(out.stdout).expect("utf-8");
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "the page refers to nothing outside itself"
    );
    for fetches in ["<script", "<link", " src=", "@import", "url("] {
        assert!(!html.contains(fetches), "the page has {fetches}");
    }

    let dir = tempfile::tempdir().expect("temp dir");
    let page = dir.path().join("report.html");
    std::fs::write(&page, &html).expect("write");
    let profile = tempfile::tempdir().expect("profile");
    let dom = chromium(&page, profile.path(), &["--dump-dom".to_owned()]);
    for seen in [
        "PenWatch compliance report: clinic c01",
        "Verified",
        "s-exceeded",
        "s-within",
        "EXCEEDED",
        "Worst excursion",
        "Other excursion",
        "0.70 mm",
        "0.20 mm",
        "1.10 mm",
        "op-c01-1",
        "aesthetic_practitioner",
        "clinician",
        "periorbital = 0.5",
        "Dr Ada Reviewer",
        "reviewed",
        "in force since",
        "class=\"limit\"",
        "class=\"excursion\"",
    ] {
        assert!(dom.contains(seen), "the reviewer sees {seen:?}: {dom}");
    }
    assert!(
        !dom.contains("s-other"),
        "another clinic's session is not in the report"
    );
    let head = dom
        .split("id=\"chain-head\">")
        .nth(1)
        .and_then(|rest| rest.get(..64))
        .expect("the chain head is shown");
    assert!(head.chars().all(|c| c.is_ascii_hexdigit()), "{head}");

    let shot = dir.path().join("report.png");
    chromium(
        &page,
        profile.path(),
        &[
            format!("--screenshot={}", shot.display()),
            "--window-size=1280,2000".to_owned(),
            "--hide-scrollbars".to_owned(),
        ],
    );
    let png = std::fs::read(&shot).expect("screenshot");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 20_000,
        "{}",
        png.len()
    );

    let pdf = dir.path().join("report.pdf");
    chromium(
        &page,
        profile.path(),
        &[
            format!("--print-to-pdf={}", pdf.display()),
            "--no-pdf-header-footer".to_owned(),
        ],
    );
    let printed = std::fs::read(&pdf).expect("pdf");
    assert!(printed.starts_with(b"%PDF"));
    let text = String::from_utf8_lossy(&printed);
    let pages = text.matches("/Type /Page").count() - text.matches("/Type /Pages").count();
    assert!(
        pages >= 2,
        "the violation starts a page of its own: {pages} pages"
    );

    if let Some(keep) = std::env::var_os("PENWATCH_KEEP_REPORT") {
        for f in ["report.html", "report.png", "report.pdf"] {
            std::fs::copy(dir.path().join(f), Path::new(&keep).join(f)).expect("keep");
        }
    }
}
