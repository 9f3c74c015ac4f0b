//! A histogram as inline SVG: bars sized by attributes, not styles, so the
//! Content-Security-Policy needs no `unsafe-inline`; each bar has a title
//! (a tooltip and a name for screen readers), and the counts are in a
//! table beside it for anyone who cannot see the chart.

use chrono::{DateTime, Duration, Utc};
use maud::{html, Markup};

use crate::table::Cells;

/// How many bars a window is cut into.
pub const BARS: i64 = 24;

/// One bar: its start, and a count per series.
pub struct Bar {
    /// Start of the bucket.
    pub start: DateTime<Utc>,
    /// Counts, one per series, stacked bottom to top.
    pub counts: Vec<u64>,
}

/// The bucket width for a window: `BARS` buckets, each at least a
/// millisecond.
pub fn bucket(from: DateTime<Utc>, to: DateTime<Utc>) -> Duration {
    let ms = (to - from).num_milliseconds().max(1);
    Duration::milliseconds(((ms + BARS - 1) / BARS).max(1))
}

/// [`bucket`] as a SQL interval, for `date_bin`.
pub fn interval_sql(from: DateTime<Utc>, to: DateTime<Utc>) -> String {
    format!(
        "INTERVAL '{} milliseconds'",
        bucket(from, to).num_milliseconds()
    )
}

fn empty(from: DateTime<Utc>, to: DateTime<Utc>, series: usize) -> Vec<Bar> {
    let w = bucket(from, to);
    let mut bars = Vec::new();
    let mut t = from;
    while t < to {
        bars.push(Bar {
            start: t,
            counts: vec![0; series],
        });
        t += w;
    }
    bars
}

/// Bars over the window from the rows of a histogram query: a `bucket`
/// start and a count `n` per row, `series` telling which series a row is.
pub fn from_cells(
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    series: usize,
    cells: &Cells,
    series_of: impl Fn(&[Option<String>]) -> usize,
) -> Vec<Bar> {
    let mut bars = empty(from, to, series);
    for r in &cells.rows {
        let at = cells
            .get(r, "bucket")
            .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
            .map(|t| t.with_timezone(&Utc));
        let n: u64 = cells.get(r, "n").and_then(|s| s.parse().ok()).unwrap_or(0);
        let Some(at) = at else { continue };
        if let Some(b) = bars.iter_mut().rev().find(|b| b.start <= at) {
            if let Some(c) = b.counts.get_mut(series_of(r)) {
                *c += n;
            }
        }
    }
    bars
}

/// The chart: `series` names the stacked counts (their CSS classes too).
pub fn svg(label: &str, bars: &[Bar], series: &[&str]) -> Markup {
    let (width, height) = (720u64, 160u64);
    let max = bars
        .iter()
        .map(|b| b.counts.iter().sum::<u64>())
        .max()
        .unwrap_or(0)
        .max(1);
    let n = bars.len().max(1) as u64;
    let slot = width / n;
    let mut rects = Vec::new();
    for (i, b) in bars.iter().enumerate() {
        let mut y = height;
        for (s, &c) in b.counts.iter().enumerate().filter(|(_, c)| **c > 0) {
            let h = (c * (height - 10) / max).max(2);
            y -= h;
            let name = series.get(s).copied().unwrap_or("other");
            let title = format!("{name}: {c} from {}", b.start.to_rfc3339());
            rects.push((name, i as u64 * slot + 1, y, h, title));
        }
    }
    let bar_width = slot.saturating_sub(2).max(1);
    html! {
        figure class="chart" {
            svg xmlns="http://www.w3.org/2000/svg" viewBox=(format!("0 0 {width} {height}"))
                role="img" aria-label=(label) {
                @for (class, x, y, h, title) in &rects {
                    rect class=(class) x=(x) y=(y) width=(bar_width) height=(h) {
                        title { (title) }
                    }
                }
            }
            figcaption {
                (label) " · "
                @for s in series {
                    span class=(format!("key {s}")) { (s) } " "
                }
            }
        }
    }
}
