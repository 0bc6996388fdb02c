//! The scans view (`/admin/scans`): scans per asset, placement, hour of day (in each site's time
//! zone) and role over a chosen period, with the fallback and unknown-code rates, redirect and page
//! latency, and the chat's escalation rate; bar charts drawn as server-side SVG (no script).

use std::collections::BTreeMap;

use askama::Template;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap};
use axum::response::{Html, IntoResponse, Response};
use chrono::{DateTime, Timelike, Utc};
use serde::Deserialize;

use crate::roles::Role;
use crate::views::ScansPage;
use crate::{AppError, AppState};

/// Latencies read per view for the percentiles (the newest); the counts cover every scan.
const MAX_LATENCIES: i64 = 200_000;
/// Assets charted one by one; the rest share one bar.
const ASSETS_CHARTED: usize = 25;

#[derive(Debug, Deserialize)]
pub struct ScansQuery {
    /// Look back this many days (1-395, default 7).
    #[serde(default)]
    pub days: Option<u32>,
}

/// The figures of one period.
#[derive(Debug, Default)]
pub struct ScanFigures {
    pub total: usize,
    /// Whether the latency percentiles come from the newest `MAX_LATENCIES` scans only.
    pub truncated: bool,
    pub fallback_rate: f64,
    pub unknown_rate: f64,
    pub redirects: usize,
    pub redirect_p50_ms: f64,
    pub redirect_p95_ms: f64,
    pub page_p50_ms: f64,
    pub page_p95_ms: f64,
    pub by_asset: Vec<(String, usize)>,
    pub by_placement: Vec<(String, usize)>,
    pub by_role: Vec<(String, usize)>,
    /// Scans of a known site per hour of the day there (0-23).
    pub by_hour: [usize; 24],
    pub conversations: i64,
    pub escalations: i64,
}

fn percentile_ms(sorted_us: &[i64], p: f64) -> f64 {
    if sorted_us.is_empty() {
        return 0.0;
    }
    sorted_us[((sorted_us.len() - 1) as f64 * p).round() as usize] as f64 / 1000.0
}

/// Counts largest first, at most `keep` of them and the rest summed as "(N others)".
fn ranked(mut counts: Vec<(String, i64)>, keep: usize) -> Vec<(String, usize)> {
    counts.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let mut out: Vec<(String, usize)> = counts
        .iter()
        .take(if counts.len() > keep.saturating_add(1) {
            keep
        } else {
            counts.len()
        })
        .map(|(k, n)| (k.clone(), *n as usize))
        .collect();
    // One left over is shown as itself, not as "(1 others)".
    if counts.len() > keep.saturating_add(1) {
        let rest: i64 = counts[keep..].iter().map(|(_, n)| n).sum();
        out.push((format!("({} others)", counts.len() - keep), rest as usize));
    }
    out
}

/// Figures for scans since `since`. Counted in SQL (a year of a busy site is millions of rows:
/// only counts come back); the hour of day from per-site, per-UTC-hour counts turned into each
/// site's local hour (exact for zones a whole number of hours from UTC).
pub async fn figures(app: &AppState, since: DateTime<Utc>) -> crate::Result<ScanFigures> {
    let since_text = since.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let pool = app.store.pool();
    let (total, fallbacks, unknown, redirects): (i64, i64, i64, i64) = sqlx::query_as(
        "SELECT COUNT(*), COALESCE(SUM(fallback != 0), 0), COALESCE(SUM(destination = 'fallback:unknown'), 0),
                COALESCE(SUM(destination LIKE 'redirect:%'), 0)
         FROM scan_events WHERE at >= ?",
    )
    .bind(&since_text)
    .fetch_one(pool)
    .await?;
    let grouped = |column: &'static str, none: &'static str| {
        let since_text = since_text.clone();
        async move {
            sqlx::query_as::<_, (String, i64)>(&format!(
                "SELECT COALESCE({column}, '{none}'), COUNT(*) FROM scan_events WHERE at >= ? GROUP BY 1"
            ))
            .bind(since_text)
            .fetch_all(pool)
            .await
        }
    };
    let by_asset = grouped("asset_id", "(no asset)").await?;
    let by_placement = grouped("placement", "(unknown code)").await?;
    let by_role = grouped("role", "(none)").await?;
    // Quarter-hour buckets (`at` is always written `YYYY-MM-DDTHH:MM:SS.mmmZ`): exact for every
    // zone in use, those a half or three quarters of an hour from UTC included.
    let hours: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT site_id, substr(at, 1, 14) || printf('%02d', CAST(substr(at, 15, 2) AS INTEGER) / 15 * 15), COUNT(*)
         FROM scan_events WHERE at >= ? AND site_id IS NOT NULL GROUP BY 1, 2",
    )
    .bind(&since_text)
    .fetch_all(pool)
    .await?;
    let zones: BTreeMap<String, chrono_tz::Tz> = app
        .store
        .sites()
        .await?
        .into_iter()
        .filter_map(|s| s.timezone.parse().ok().map(|tz| (s.id, tz)))
        .collect();
    let mut f = ScanFigures {
        total: total as usize,
        ..ScanFigures::default()
    };
    for (site, hour, n) in hours {
        let Ok(at) = DateTime::parse_from_rfc3339(&format!("{hour}:00Z")) else {
            continue;
        };
        let tz = zones.get(&site).copied().unwrap_or(chrono_tz::UTC);
        f.by_hour[at.with_timezone(&tz).hour() as usize] += n as usize;
    }
    let latencies: Vec<(bool, bool, i64)> = sqlx::query_as(
        "SELECT destination LIKE 'redirect:%', fallback != 0, latency_us FROM scan_events
         WHERE at >= ? ORDER BY id DESC LIMIT ?",
    )
    .bind(&since_text)
    .bind(MAX_LATENCIES + 1)
    .fetch_all(pool)
    .await?;
    f.truncated = latencies.len() as i64 > MAX_LATENCIES;
    let (mut redirect_us, mut page_us) = (Vec::new(), Vec::new());
    for (redirect, fallback, latency) in latencies.into_iter().take(MAX_LATENCIES as usize) {
        if redirect {
            redirect_us.push(latency);
        } else if !fallback {
            page_us.push(latency);
        }
    }
    redirect_us.sort_unstable();
    page_us.sort_unstable();
    let share = |n: i64| {
        if total == 0 {
            0.0
        } else {
            n as f64 / total as f64
        }
    };
    f.fallback_rate = share(fallbacks);
    f.unknown_rate = share(unknown);
    f.redirects = redirects as usize;
    f.redirect_p50_ms = percentile_ms(&redirect_us, 0.5);
    f.redirect_p95_ms = percentile_ms(&redirect_us, 0.95);
    f.page_p50_ms = percentile_ms(&page_us, 0.5);
    f.page_p95_ms = percentile_ms(&page_us, 0.95);
    f.by_asset = ranked(by_asset, ASSETS_CHARTED);
    f.by_placement = ranked(by_placement, ASSETS_CHARTED);
    f.by_role = ranked(by_role, usize::MAX);
    let since_secs = since.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    f.conversations =
        sqlx::query_scalar("SELECT COUNT(*) FROM conversations WHERE created_at >= ?")
            .bind(&since_secs)
            .fetch_one(pool)
            .await?;
    // Conversations of the period that reached a person (one may open several tickets).
    f.escalations = sqlx::query_scalar(
        "SELECT COUNT(DISTINCT t.conversation_id) FROM tickets t
         JOIN conversations c ON c.id = t.conversation_id WHERE c.created_at >= ?",
    )
    .bind(&since_secs)
    .fetch_one(pool)
    .await?;
    Ok(f)
}

/// A horizontal bar chart: one labelled bar per (label, count).
pub fn bars_svg(title: &str, data: &[(String, usize)]) -> String {
    let max = data.iter().map(|d| d.1).max().unwrap_or(0).max(1);
    let (row, label_w, bar_w) = (22, 170, 260);
    let height = row * data.len().max(1) + 8;
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" role=\"img\" aria-label=\"{}\" viewBox=\"0 0 {} {height}\" width=\"100%\" class=\"chart\">",
        escape(title),
        label_w + bar_w + 60
    );
    for (i, (label, n)) in data.iter().enumerate() {
        let y = i * row + 4;
        let w = (*n as f64 / max as f64 * bar_w as f64).round().max(1.0);
        let short: String = label.chars().take(26).collect();
        svg.push_str(&format!(
            "<text x=\"0\" y=\"{}\" font-size=\"12\">{}</text><rect x=\"{label_w}\" y=\"{y}\" width=\"{w}\" height=\"{}\" fill=\"#2f6f9f\"/><text x=\"{}\" y=\"{}\" font-size=\"12\">{n}</text>",
            y + 14,
            escape(&short),
            row - 6,
            label_w as f64 + w + 6.0,
            y + 14
        ));
    }
    svg.push_str("</svg>");
    svg
}

/// A 24-column chart of scans by hour of day.
pub fn hours_svg(by_hour: &[usize; 24]) -> String {
    let max = by_hour.iter().copied().max().unwrap_or(0).max(1);
    let (col, h) = (18, 120);
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" role=\"img\" aria-label=\"Scans by hour of day at the site\" viewBox=\"0 0 {} {}\" width=\"100%\" class=\"chart\" id=\"hours\">",
        col * 24,
        h + 18
    );
    for (hour, n) in by_hour.iter().enumerate() {
        let bar = (*n as f64 / max as f64 * h as f64).round();
        let x = hour * col;
        svg.push_str(&format!(
            "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{bar}\" fill=\"#2f6f9f\"><title>{hour:02}:00 {n} scans</title></rect>",
            x + 2,
            h as f64 - bar,
            col - 4
        ));
        if hour % 3 == 0 {
            svg.push_str(&format!(
                "<text x=\"{}\" y=\"{}\" font-size=\"10\">{hour:02}</text>",
                x + 2,
                h + 14
            ));
        }
    }
    svg.push_str("</svg>");
    svg
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// `GET /admin/scans`.
pub async fn page(
    State(app): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<ScansQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, AppError> {
    // `?days=abc` reads as the default period rather than a plain-text 400.
    let query = query.map(|Query(q)| q).unwrap_or(ScansQuery { days: None });
    let me = match crate::account::require_role(
        &app,
        &headers,
        &[Role::Admin, Role::Editor],
        "The scans view is for administrators and content editors.",
    )
    .await?
    {
        Ok(me) => me,
        Err(r) => return Ok(r),
    };
    let days = query.days.unwrap_or(7).clamp(1, 395);
    let f = figures(&app, app.now() - chrono::Duration::days(i64::from(days))).await?;
    let html = ScansPage {
        lang: "en".to_string(),
        csrf: me.csrf.clone(),
        me: crate::views::Me::of(&me),
        days,
        asset_chart: bars_svg("Scans per asset", &f.by_asset),
        placement_chart: bars_svg("Scans per placement", &f.by_placement),
        role_chart: bars_svg("Scans per role", &f.by_role),
        hour_chart: hours_svg(&f.by_hour),
        escalation_rate: if f.conversations == 0 {
            0.0
        } else {
            f.escalations as f64 / f.conversations as f64
        },
        f,
    }
    .render()?;
    Ok(([(header::CACHE_CONTROL, "no-store")], Html(html)).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charts_escape_their_labels_and_scale_to_the_largest() {
        let svg = bars_svg("t", &[("<b>".to_string(), 10), ("a&b".to_string(), 5)]);
        assert!(svg.contains("&lt;b&gt;") && svg.contains("a&amp;b"));
        assert!(!svg.contains("<b>"));
        assert!(svg.contains("width=\"260\"") && svg.contains("width=\"130\""));
        let ranked = ranked(
            vec![
                ("a".into(), 5),
                ("b".into(), 9),
                ("c".into(), 1),
                ("d".into(), 2),
            ],
            2,
        );
        assert_eq!(
            ranked,
            [
                ("b".to_string(), 9),
                ("a".to_string(), 5),
                ("(2 others)".to_string(), 3)
            ]
        );
        // One left over is itself, not "(1 others)".
        assert_eq!(
            super::ranked(vec![("a".into(), 5), ("b".into(), 9), ("c".into(), 1)], 2).len(),
            3
        );
        let mut hours = [0usize; 24];
        hours[9] = 4;
        let svg = hours_svg(&hours);
        assert!(svg.contains("09:00 4 scans"));
        assert_eq!(svg.matches("<rect").count(), 24);
    }
}
