//! Every screen rendered with `TestBackend`: text as insta snapshots, colours checked apart.

use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::buffer::Buffer;
use ratatui::style::{Color, Modifier};

use crate::app::{App, Msg, Tab};
use crate::fixtures::{self, NOW};
use crate::ui::draw;

fn render(app: &App, width: u16, height: u16) -> Buffer {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).expect("test terminal");
    terminal.draw(|f| draw(f, app)).expect("draw");
    terminal.backend().buffer().clone()
}

/// The buffer's symbols, one line per row, trailing blanks trimmed.
fn text(buffer: &Buffer) -> String {
    let width = buffer.area.width as usize;
    buffer
        .content
        .chunks(width)
        .map(|row| {
            row.iter()
                .map(|c| c.symbol())
                .collect::<String>()
                .trim_end()
                .to_owned()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Position of the first cell of `needle` in the buffer.
fn find(buffer: &Buffer, needle: &str) -> Option<(u16, u16)> {
    let width = buffer.area.width;
    (0..buffer.area.height).find_map(|y| {
        let row: Vec<&str> = (0..width).map(|x| buffer[(x, y)].symbol()).collect();
        let line = row.concat();
        line.find(needle).map(|byte| {
            let x = row
                .iter()
                .scan(0, |acc, s| {
                    let start = *acc;
                    *acc += s.len();
                    Some(start)
                })
                .position(|start| start == byte)
                .unwrap_or(0);
            (x as u16, y)
        })
    })
}

fn on(tab: Tab, role: &str) -> App {
    let mut app = fixtures::app(role);
    app.update(Msg::SelectTab(tab));
    app
}

fn opened_detail() -> App {
    let mut app = on(Tab::Sessions, "clinic-manager");
    let cmds = app.update(Msg::Open);
    assert_eq!(cmds.len(), 1, "opening asks the client to load it");
    app.update(Msg::SessionDetail(Box::new(fixtures::detail())));
    app
}

#[test]
fn fleet_wide() {
    insta::assert_snapshot!(text(&render(&on(Tab::Fleet, "clinic-manager"), 140, 16)));
}

#[test]
fn a_thousand_pens_render_and_scroll() {
    let mut app = App::new(NOW, false);
    app.update(Msg::Identity(penwatch_proto::v1::WhoAmIResponse {
        role: "reviewer".into(),
        ..Default::default()
    }));
    let fleet = (0..1_000)
        .map(|i| {
            fixtures::device(
                &format!("pen-{i:04}"),
                &format!("c{:02}", i % 20),
                "medical",
                "online",
                &format!("s-{i}"),
                "op",
                if i == 700 { 2.75 } else { 1.0 },
                2.5,
            )
        })
        .collect();
    app.update(Msg::Fleet(fleet));
    let screen = text(&render(&app, 200, 60));
    assert!(screen.contains("Fleet: 1000 pens"), "{screen}");
    let first_row = screen.lines().nth(4).unwrap_or_default();
    assert!(first_row.starts_with("▲ EXCEEDED pen-0700"), "{first_row}");
    app.update(Msg::Bottom);
    let screen = text(&render(&app, 200, 60));
    assert!(screen.contains("pen-0999"), "scrolled to the end: {screen}");
}

#[test]
fn fleet_80x24() {
    insta::assert_snapshot!(text(&render(&on(Tab::Fleet, "clinic-manager"), 80, 24)));
}

#[test]
fn fleet_manufacturer_has_no_operator_column() {
    let buffer = render(&on(Tab::Fleet, "manufacturer"), 140, 16);
    let screen = text(&buffer);
    assert!(!screen.contains("Operator"), "{screen}");
    assert!(!screen.contains("op-ana"), "{screen}");
    insta::assert_snapshot!(screen);
}

#[test]
fn sessions_wide_flags_exceeded() {
    insta::assert_snapshot!(text(&render(&on(Tab::Sessions, "clinic-manager"), 140, 14)));
}

#[test]
fn sessions_80x24() {
    insta::assert_snapshot!(text(&render(&on(Tab::Sessions, "clinic-manager"), 80, 24)));
}

#[test]
fn sessions_manufacturer() {
    let screen = text(&render(&on(Tab::Sessions, "manufacturer"), 140, 14));
    assert!(
        !screen.contains("Operator") && !screen.contains("op-"),
        "{screen}"
    );
    assert!(
        !screen.contains("5 Operators"),
        "no Operators tab: {screen}"
    );
    insta::assert_snapshot!(screen);
}

#[test]
fn exceeded_flag_is_red_and_bold_and_ok_is_green() {
    let buffer = render(&on(Tab::Sessions, "clinic-manager"), 140, 14);
    let (x, y) = find(&buffer, "▲ EXCEEDED").expect("a flagged session");
    for dx in 0..10 {
        let cell = &buffer[(x + dx, y)];
        assert_eq!(cell.fg, Color::Red, "cell {dx} of the flag");
        assert!(cell.modifier.contains(Modifier::BOLD));
    }
    let (x, y) = find(&buffer, "✓ ok").expect("a session within limits");
    assert_eq!(buffer[(x, y)].fg, Color::Green);
    let (x, y) = find(&buffer, "0.75 / 0.50").expect("peak over limit");
    assert_eq!(buffer[(x, y)].fg, Color::Red);
}

#[test]
fn fleet_gauge_colours() {
    let buffer = render(&on(Tab::Fleet, "clinic-manager"), 140, 16);
    let (x, y) = find(&buffer, "0.75/0.50").expect("over-limit pen");
    assert_eq!(buffer[(x, y)].fg, Color::Red);
    let (x, y) = find(&buffer, "1.20/2.50").expect("pen within limit");
    assert_eq!(buffer[(x - 9, y)].fg, Color::Green, "its bar is green");
    let (x, y) = find(&buffer, "104%").expect("worn cartridge");
    assert_eq!(buffer[(x, y)].fg, Color::Red);
}

#[test]
fn session_detail_wide() {
    insta::assert_snapshot!(text(&render(&opened_detail(), 120, 30)));
}

#[test]
fn session_detail_80x24() {
    insta::assert_snapshot!(text(&render(&opened_detail(), 80, 24)));
}

#[test]
fn session_detail_draws_the_limit_in_red() {
    let buffer = render(&opened_detail(), 120, 30);
    let red_dots = buffer
        .content
        .iter()
        .filter(|c| c.symbol() == "•" && c.fg == Color::Red)
        .count();
    assert!(red_dots > 20, "permitted-depth line: {red_dots} red dots");
    assert!(
        buffer.content.iter().any(|c| c.fg == Color::Cyan),
        "depth line"
    );
}

#[test]
fn violations_with_alert_banner() {
    let mut app = on(Tab::Violations, "clinic-manager");
    let s = fixtures::session("s-new", "pen-m2", "c01", "medical", "op-ben");
    let fresh = penwatch_proto::v1::Violation {
        evidence: Some(fixtures::evidence(2.75, 2.5, "class", NOW - 5_000)),
        ..fixtures::violation(&s, false)
    };
    app.update(Msg::NewViolations(vec![fresh]));
    let buffer = render(&app, 140, 12);
    let (x, y) = find(&buffer, "▲ NEW VIOLATION").expect("banner");
    assert_eq!(buffer[(x, y)].bg, Color::Yellow);
    insta::assert_snapshot!(text(&buffer));
}

#[test]
fn violations_80x24() {
    insta::assert_snapshot!(text(&render(
        &on(Tab::Violations, "clinic-manager"),
        80,
        24
    )));
}

#[test]
fn cartridges_wide() {
    insta::assert_snapshot!(text(&render(
        &on(Tab::Cartridges, "clinic-manager"),
        140,
        18
    )));
}

#[test]
fn cartridges_80x24() {
    insta::assert_snapshot!(text(&render(
        &on(Tab::Cartridges, "clinic-manager"),
        80,
        24
    )));
}

#[test]
fn operators_wide() {
    insta::assert_snapshot!(text(&render(
        &on(Tab::Operators, "clinic-manager"),
        120,
        10
    )));
}

#[test]
fn help_overlay_80x24() {
    let mut app = on(Tab::Fleet, "clinic-manager");
    app.update(Msg::ToggleHelp);
    insta::assert_snapshot!(text(&render(&app, 80, 24)));
}

#[test]
fn connection_lost_banner_keeps_data() {
    let mut app = on(Tab::Fleet, "clinic-manager");
    app.update(Msg::Disconnected {
        reason: "Unavailable: connection refused".into(),
        retry_in_ms: 4_000,
    });
    let buffer = render(&app, 80, 24);
    let (x, y) = find(&buffer, "✖ CONNECTION LOST").expect("banner");
    assert_eq!(buffer[(x, y)].bg, Color::Red);
    insta::assert_snapshot!(text(&buffer));
}

#[test]
fn one_gateway_unreachable_of_three_is_named_in_a_banner_and_its_pens_shown_as_stale() {
    let mut app = on(Tab::Fleet, "reviewer");
    let gateway = |n: u32, problem: Option<&str>| {
        (
            format!("http://10.0.0.{n}:50051"),
            problem.map(str::to_owned),
        )
    };
    app.update(Msg::Gateways(vec![
        gateway(1, None),
        gateway(2, Some("cannot reach the gateway: connection refused")),
        gateway(3, None),
    ]));
    // The answering gateways list every pen but the silent one's two.
    let listed = fixtures::fleet()
        .into_iter()
        .filter(|d| d.device_id != "pen-s2" && d.device_id != "pen-h2")
        .collect();
    app.update(Msg::FleetList {
        devices: listed,
        complete: false,
    });
    let buffer = render(&app, 150, 14);
    let (x, y) = find(&buffer, "✖ 2 of 3 gateways answering").expect("banner");
    assert_eq!(buffer[(x, y)].bg, Color::Red);
    assert!(find(&buffer, "◐ 2/3 gateways").is_some(), "the status line");
    assert!(
        find(&buffer, "2 as last seen").is_some(),
        "the fleet's title"
    );
    insta::assert_snapshot!(text(&buffer));
    app.update(Msg::Gateways(vec![
        gateway(1, None),
        gateway(2, None),
        gateway(3, None),
    ]));
    let buffer = render(&app, 150, 14);
    assert!(
        find(&buffer, "gateways answering").is_none(),
        "gone once all answer"
    );
    assert!(find(&buffer, "● live 3 gateways").is_some());
}

#[test]
fn search_prompt_and_filters_in_header() {
    let mut app = on(Tab::Sessions, "clinic-manager");
    app.update(Msg::ToggleExceeded);
    app.update(Msg::StartSearch);
    for c in "pen-h".chars() {
        app.update(Msg::SearchInput(c));
    }
    insta::assert_snapshot!(text(&render(&app, 80, 12)));
}

#[test]
fn device_text_with_terminal_sequences_is_shown_escaped() {
    let mut app = on(Tab::Fleet, "reviewer");
    let mut pen = fixtures::device(
        "pen-esc", "c01", "salon", "online", "s-esc", "op-1", 0.5, 1.0,
    );
    pen.model = "\u{1b}[2J\u{1b}]0;owned\u{7}Pro".into();
    pen.firmware = "2\u{9b}31m".into();
    app.update(Msg::Fleet(vec![pen]));
    let mut cartridges = fixtures::cartridges();
    cartridges.cartridges[0].model = "N\u{1b}[5m".into();
    cartridges.cartridges[0].firmware = "\u{1b}[31m1.0".into();
    app.update(Msg::Cartridges(cartridges));
    for tab in [Tab::Fleet, Tab::Cartridges] {
        app.update(Msg::SelectTab(tab));
        let screen = text(&render(&app, 200, 20));
        assert!(
            !screen.chars().any(|c| c != '\n' && c.is_control()),
            "{screen:?}"
        );
        assert!(screen.contains("\\u{1b}["), "{tab:?}: {screen}");
    }
}

#[test]
fn a_refused_token_says_so_and_does_not_claim_a_lost_connection() {
    let mut app = on(Tab::Fleet, "clinic-manager");
    app.update(Msg::Refused {
        reason: "Unauthenticated: unknown token".into(),
    });
    let buffer = render(&app, 120, 24);
    assert!(find(&buffer, "✖ ACCESS REFUSED").is_some(), "the banner");
    assert!(find(&buffer, "CONNECTION LOST").is_none());
    assert!(find(&buffer, "not retrying").is_some());
}

#[test]
fn times_are_shown_in_the_chosen_zone_and_the_header_names_it() {
    let mut app = on(Tab::Sessions, "clinic-manager");
    app.zone = crate::format::Zone::named("Europe/Berlin");
    let screen = text(&render(&app, 140, 12));
    assert!(screen.contains("16:13:20 CEST Europe/Berlin"), "{screen}");
    assert!(
        screen.contains("09-21 15:53"),
        "started in local time: {screen}"
    );
    assert!(!screen.contains("UTC"), "{screen}");
}

#[test]
fn an_exceeded_pen_back_within_its_limit_shows_the_peak_that_flagged_it() {
    let mut app = on(Tab::Fleet, "clinic-manager");
    app.update(Msg::Fleet(vec![penwatch_proto::v1::DeviceState {
        exceeded: true,
        session_peak_mm: 0.9,
        session_peak_limit_mm: 0.5,
        session_peak_rule: "class".into(),
        last_seen_ms: NOW - 1_000,
        ..fixtures::device(
            "pen-h1", "c01", "home", "online", "s-h1", "op-ana", 0.3, 0.5,
        )
    }]));
    let screen = text(&render(&app, 140, 16));
    let row = screen.lines().find(|l| l.contains("pen-h1")).expect("row");
    assert!(row.contains("▲ EXCEEDED"), "{row}");
    assert!(row.contains("▲ peak 0.90/0.50"), "{row}");
    assert!(
        !row.contains("0.30"),
        "not the current depth beside the flag: {row}"
    );
}

#[test]
fn a_pen_far_off_the_gateways_clock_is_noticed_in_a_banner_and_on_its_row() {
    let mut app = on(Tab::Fleet, "clinic-manager");
    app.update(Msg::Fleet(vec![penwatch_proto::v1::DeviceState {
        clock_offset_ms: 312_000,
        last_seen_ms: NOW - 1_000,
        ..fixtures::device(
            "pen-m1", "c01", "medical", "online", "s-m1", "op-ben", 1.2, 2.5,
        )
    }]));
    let buffer = render(&app, 140, 16);
    let (x, y) = find(&buffer, "⏱ CLOCK").expect("banner");
    assert_eq!(buffer[(x, y)].bg, Color::Cyan);
    let screen = text(&buffer);
    assert!(
        screen.contains("1 pen off the gateway's clock by over 60s (worst pen-m1 +5m 12s)"),
        "{screen}"
    );
    let row = screen
        .lines()
        .find(|l| l.contains("pen-m1") && !l.contains("CLOCK"))
        .expect("row");
    assert!(row.contains("· clock"), "{row}");
}

#[test]
fn an_unknown_operator_is_marked_on_every_screen_that_names_operators() {
    let mut app = on(Tab::Fleet, "clinic-manager");
    let mut ops = fixtures::operators();
    ops.push(penwatch_proto::v1::OperatorSummary {
        operator_id: "op-zed".into(),
        clinic_id: "c01".into(),
        known: false,
        ..Default::default()
    });
    app.update(Msg::Operators(ops));
    app.update(Msg::Fleet(vec![fixtures::device(
        "pen-m1", "c01", "medical", "online", "s-m1", "op-zed", 1.2, 2.5,
    )]));
    let screen = text(&render(&app, 140, 16));
    let row = screen.lines().find(|l| l.contains("pen-m1")).expect("row");
    assert!(row.contains("op-zed?"), "fleet: {row}");
    app.update(Msg::SelectTab(Tab::Sessions));
    let screen = text(&render(&app, 140, 16));
    assert!(screen.contains("op-dan?"), "sessions: {screen}");
}

#[test]
fn ids_are_never_cut_at_140_columns_columns_give_way_instead() {
    let long_pen = "pen-north-clinic-0042";
    let long_session = "sess-2026-11-30-0917-a";
    let long_cartridge = "cartridge-NANO12-000781";
    let mut app = on(Tab::Fleet, "clinic-manager");
    let mut pen = fixtures::device(
        long_pen,
        "c01",
        "salon",
        "online",
        long_session,
        "op-ana",
        0.4,
        1.0,
    );
    pen.cartridge_id = long_cartridge.into();
    app.update(Msg::Fleet(vec![pen]));
    for tab in [Tab::Fleet, Tab::Sessions] {
        app.update(Msg::SelectTab(tab));
        let screen = text(&render(&app, 140, 16));
        let row = screen
            .lines()
            .find(|l| l.contains(long_pen))
            .unwrap_or_else(|| panic!("{tab:?}: {screen}"));
        assert!(row.contains(long_session), "{tab:?}: {row}");
        assert!(
            row.contains(long_cartridge) || !row.contains("cartridge-"),
            "shown whole or not at all: {row}"
        );
    }
}
