//! The terminal side: terminal events, the clock and client messages go through the reducer;
//! the screen is redrawn only when something changed, at most once per [`FRAME`].

use std::io::Write;
use std::time::{Duration, Instant};

use crossterm::event::Event;
use ratatui::DefaultTerminal;
use tokio::sync::mpsc;

use crate::app::{App, Command, Msg};
use crate::client::now_ms;
use crate::input::map_key;
use crate::ui;

/// Shortest time between two redraws (10 frames per second at most).
pub const FRAME: Duration = Duration::from_millis(100);
/// Most queued client messages applied between two redraws.
const DRAIN: usize = 256;

/// Reads terminal events on a thread of its own (crossterm's `read` blocks).
pub fn spawn_terminal_events() -> mpsc::Receiver<Event> {
    let (tx, rx) = mpsc::channel(64);
    std::thread::spawn(move || {
        while let Ok(event) = crossterm::event::read() {
            if tx.blocking_send(event).is_err() {
                break;
            }
        }
    });
    rx
}

/// Runs the dashboard until the user quits, a signal arrives, or the client stops.
pub async fn run(
    terminal: &mut DefaultTerminal,
    mut app: App,
    mut messages: mpsc::Receiver<Msg>,
    mut events: mpsc::Receiver<Event>,
    commands: mpsc::UnboundedSender<Command>,
) -> std::io::Result<()> {
    let mut tick = tokio::time::interval(FRAME);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut dirty = true;
    let mut last_draw: Option<Instant> = None;
    loop {
        tokio::select! {
            msg = messages.recv() => {
                let Some(msg) = msg else { break };
                apply(&mut app, msg, &commands);
                for _ in 0..DRAIN {
                    match messages.try_recv() {
                        Ok(msg) => apply(&mut app, msg, &commands),
                        Err(_) => break,
                    }
                }
                dirty = true;
            }
            event = events.recv() => {
                let msg = match event {
                    Some(Event::Key(key)) => map_key(key, app.mode),
                    Some(Event::Resize(..)) => Some(Msg::Resized),
                    Some(_) => None,
                    None => Some(Msg::Quit),
                };
                if let Some(msg) = msg {
                    apply(&mut app, msg, &commands);
                    dirty = true;
                }
            }
            _ = tick.tick() => {
                let now = now_ms();
                dirty |= now / 1000 != app.now_ms / 1000;
                apply(&mut app, Msg::Tick(now), &commands);
            }
            _ = tokio::signal::ctrl_c() => app.quit = true,
            _ = terminate.recv() => app.quit = true,
        }
        if app.quit {
            break;
        }
        if dirty && last_draw.is_none_or(|t| t.elapsed() >= FRAME) {
            terminal.draw(|frame| ui::draw(frame, &app))?;
            dirty = false;
            last_draw = Some(Instant::now());
        }
    }
    Ok(())
}

fn apply(app: &mut App, msg: Msg, commands: &mpsc::UnboundedSender<Command>) {
    for cmd in app.update(msg) {
        match cmd {
            Command::Bell => {
                let mut out = std::io::stdout();
                let _ = out.write_all(b"\x07").and_then(|()| out.flush());
            }
            cmd => {
                let _ = commands.send(cmd);
            }
        }
    }
}
