//! A session's depth over time as inline SVG: the set depth, the permitted depth as a
//! stepped limit line, and each excursion above it shaded with its samples marked.

use std::fmt::Write;

use penwatch_proto::v1 as pb;

const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 240.0;
/// Plot area margins: left (depth labels), right, top, bottom (time labels).
const LEFT: f64 = 48.0;
const RIGHT: f64 = 12.0;
const TOP: f64 = 12.0;
const BOTTOM: f64 = 28.0;

/// Maps times and depths to the plot area.
struct Scale {
    t0: i64,
    t1: i64,
    max_mm: f64,
}

impl Scale {
    fn x(&self, t: i64) -> f64 {
        let span = (self.t1 - self.t0).max(1) as f64;
        LEFT + (t - self.t0) as f64 / span * (WIDTH - LEFT - RIGHT)
    }

    fn y(&self, mm: f64) -> f64 {
        TOP + (1.0 - mm / self.max_mm) * (HEIGHT - TOP - BOTTOM)
    }
}

/// `HH:MM:SS` (UTC) of a Unix ms time.
fn clock(ms: i64) -> String {
    let s = ms.div_euclid(1000).rem_euclid(86_400);
    format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

/// The chart of `points` (in time order), with `excursions` (first, last above, Unix ms)
/// shaded; `label` is the chart's accessible title (already HTML-escaped).
pub fn svg(points: &[pb::DepthPoint], excursions: &[(i64, i64)], label: &str) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "<svg class=\"chart\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" \
         role=\"img\"><title>{label}</title>"
    );
    let (Some(first), Some(last)) = (points.first(), points.last()) else {
        out.push_str("<text x=\"10\" y=\"20\">no samples kept for this session</text></svg>");
        return out;
    };
    let deepest = points
        .iter()
        .map(|p| p.depth_mm.max(p.permitted_mm))
        .fold(0.5_f64, f64::max);
    let scale = Scale {
        t0: first.timestamp_ms,
        t1: last.timestamp_ms,
        max_mm: (deepest * 1.15 / 0.5).ceil() * 0.5,
    };
    // Grid and depth labels every 0.5 mm.
    let mut mm = 0.0;
    while mm <= scale.max_mm + 1e-9 {
        let y = scale.y(mm);
        let _ = write!(
            out,
            "<line class=\"grid\" x1=\"{LEFT}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\"/>\
             <text class=\"axis\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{mm:.1} mm</text>",
            WIDTH - RIGHT,
            LEFT - 4.0,
            y + 4.0
        );
        mm += 0.5;
    }
    for &(from, to) in excursions {
        let (x0, x1) = (scale.x(from), scale.x(to));
        let _ = write!(
            out,
            "<rect class=\"excursion\" x=\"{:.1}\" y=\"{TOP}\" width=\"{:.1}\" height=\"{:.1}\"/>",
            x0 - 2.0,
            (x1 - x0) + 4.0,
            HEIGHT - TOP - BOTTOM
        );
    }
    let path = |value: fn(&pb::DepthPoint) -> f64, stepped: bool| {
        let mut d = String::new();
        for (i, p) in points.iter().enumerate() {
            let (x, y) = (scale.x(p.timestamp_ms), scale.y(value(p)));
            let op = if i == 0 { 'M' } else { 'L' };
            if stepped && i > 0 {
                let _ = write!(d, "H{x:.1}");
            }
            let _ = write!(d, "{op}{x:.1},{y:.1}");
        }
        d
    };
    let _ = write!(
        out,
        "<path class=\"limit\" d=\"{}\"/><path class=\"depth\" d=\"{}\"/>",
        path(|p| p.permitted_mm, true),
        path(|p| p.depth_mm, false)
    );
    for p in points.iter().filter(|p| p.exceeded) {
        let _ = write!(
            out,
            "<circle class=\"over\" cx=\"{:.1}\" cy=\"{:.1}\" r=\"2.5\"/>",
            scale.x(p.timestamp_ms),
            scale.y(p.depth_mm)
        );
    }
    let base = HEIGHT - 8.0;
    let _ = write!(
        out,
        "<text class=\"axis\" x=\"{LEFT}\" y=\"{base}\">{} UTC</text>\
         <text class=\"axis\" x=\"{:.1}\" y=\"{base}\" text-anchor=\"end\">{} UTC</text></svg>",
        clock(first.timestamp_ms),
        WIDTH - RIGHT,
        clock(last.timestamp_ms)
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(t: i64, depth_mm: f64, permitted_mm: f64) -> pb::DepthPoint {
        pb::DepthPoint {
            timestamp_ms: t,
            depth_mm,
            permitted_mm,
            exceeded: depth_mm > permitted_mm,
            ..pb::DepthPoint::default()
        }
    }

    #[test]
    fn a_chart_draws_the_limit_the_depth_and_each_excursion() {
        let points = [
            point(0, 0.5, 1.0),
            point(1000, 1.25, 1.0),
            point(2000, 0.5, 0.5),
        ];
        let svg = svg(&points, &[(1000, 1000)], "s-1");
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert_eq!(svg.matches("class=\"limit\"").count(), 1);
        assert_eq!(svg.matches("class=\"excursion\"").count(), 1);
        assert_eq!(svg.matches("class=\"over\"").count(), 1);
        // 1.25 mm × 1.15 rounds up to a 1.5 mm scale: the top grid line is labelled 1.5 mm.
        assert!(svg.contains(">1.5 mm</text>"), "{svg}");
        assert!(svg.contains("00:00:02 UTC"));
        assert!(super::svg(&[], &[], "x").contains("no samples"));
    }
}
