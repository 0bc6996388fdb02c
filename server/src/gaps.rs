//! What people could not find: chat questions answered with low confidence, handed to a person, or
//! rated unhelpful, grouped so that one missing section shows up as one line however many ways it
//! was asked. Grouping is average-linkage clustering of the questions' embeddings, written by hand
//! (our core): two groups merge while the mean cosine between their questions clears the embedding
//! model's same-question threshold, measured on `evals/data/question-paraphrases.jsonl`.

use std::collections::BTreeMap;

/// The cosine above which two questions are taken to ask the same thing, per embedding model.
/// Measured on our 20 groups of 3 paraphrases (60 same-group pairs, 1,710 different-group pairs;
/// README, "Content gaps"): MiniLM at 0.55 has pairwise precision 0.91 and recall 0.67; e5's cosines
/// sit much higher (unrelated questions: median 0.81) and 0.89 gives precision 0.78, recall 0.75.
pub fn same_question_threshold(model_id: &str) -> f32 {
    if model_id.starts_with("multilingual-e5") {
        0.89
    } else {
        0.55
    }
}

/// Average-linkage agglomerative clustering of unit vectors: repeatedly merges the two clusters with
/// the highest mean pairwise cosine while it is at least `threshold`. Returns clusters of indices,
/// largest first (ties: the one holding the lowest index first), each sorted.
pub fn cluster(vectors: &[Vec<f32>], threshold: f32) -> Vec<Vec<usize>> {
    let n = vectors.len();
    let cos = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>();
    // Sum of cosines between every pair of clusters (indexed by cluster id), kept up to date on merges.
    let mut sums: Vec<Vec<f32>> = (0..n)
        .map(|i| (0..n).map(|j| cos(&vectors[i], &vectors[j])).collect())
        .collect();
    let mut members: Vec<Vec<usize>> = (0..n).map(|i| vec![i]).collect();
    let mut alive: Vec<bool> = vec![true; n];
    loop {
        let mut best: Option<(f32, usize, usize)> = None;
        for a in (0..n).filter(|&a| alive[a]) {
            for b in (a + 1..n).filter(|&b| alive[b]) {
                let mean = sums[a][b] / (members[a].len() * members[b].len()) as f32;
                if mean >= threshold && best.is_none_or(|(m, _, _)| mean > m) {
                    best = Some((mean, a, b));
                }
            }
        }
        let Some((_, a, b)) = best else { break };
        // b joins a.
        let moved = std::mem::take(&mut members[b]);
        members[a].extend(moved);
        alive[b] = false;
        // The matrix is symmetric: row a and column a change together.
        #[allow(clippy::needless_range_loop)]
        for c in 0..n {
            let s = sums[a][c] + sums[b][c];
            sums[a][c] = s;
            sums[c][a] = s;
        }
    }
    let mut out: Vec<Vec<usize>> = members
        .into_iter()
        .zip(alive)
        .filter(|(_, alive)| *alive)
        .map(|(mut m, _)| {
            m.sort_unstable();
            m
        })
        .collect();
    out.sort_by(|x, y| y.len().cmp(&x.len()).then(x[0].cmp(&y[0])));
    out
}

/// One question that went unanswered (or badly answered), as the gaps view reads it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct GapTurn {
    pub id: i64,
    pub at: String,
    pub asset_id: String,
    pub question: String,
    pub citations: String,
    pub confidence: f64,
    pub escalated: bool,
    pub feedback: Option<i64>,
}

/// Turns since `since` (RFC 3339) that were unsure or rated down, newest first, at most `limit`
/// (turns stored before their kind was kept: also those escalated). Only the public chat's turns: patients' questions are never stored verbatim. Only
/// questions put to the assistant: a bare request for a person, a message written to an agent who
/// had the conversation or one sent on while the assistant was busy is not a gap in the manuals
/// (and what people write to agents is not for the content team to read).
pub async fn gap_turns(
    store: &crate::store::Store,
    since: &str,
    threshold: f64,
    limit: i64,
) -> crate::Result<Vec<GapTurn>> {
    let turns: Vec<GapTurn> = sqlx::query_as(
        "SELECT t.id, t.at, c.asset_id, t.question, t.citations, t.confidence, t.escalated != 0 AS escalated, t.feedback
         FROM chat_turns t JOIN conversations c ON c.id = t.conversation_id
         WHERE t.at >= ?1 AND (
             (t.kind IS NULL AND (t.confidence < ?2 OR t.escalated != 0 OR t.feedback = -1))
             OR (t.kind IN ('answered', 'unsure') AND (t.kind = 'unsure' OR t.confidence < ?2 OR t.feedback = -1)))
           AND t.id NOT IN (SELECT turn_id FROM gap_handled)
         ORDER BY t.id DESC LIMIT ?3",
    )
    .bind(since)
    .bind(threshold)
    .bind(limit)
    .fetch_all(store.pool())
    .await?;
    // A question that also asked for a call back ("call me on ..., the pump keeps alarming") is a
    // question for the manuals, but its number or address is not the content team's to read or
    // to export.
    Ok(turns
        .into_iter()
        .map(|turn| GapTurn {
            question: crate::http::without_contacts(&turn.question),
            ..turn
        })
        .collect())
}

/// The manual sections a turn's answer offered: (manual id, section, url).
pub fn offered(citations_json: &str) -> Vec<(String, String, String)> {
    let mut out: Vec<(String, String, String)> = Vec::new();
    for c in serde_json::from_str::<Vec<serde_json::Value>>(citations_json).unwrap_or_default() {
        let (Some(manual), Some(section), Some(url)) = (
            c["manual"].as_str(),
            c["section"].as_str(),
            c["url"].as_str(),
        ) else {
            continue;
        };
        let section = (manual.to_string(), section.to_string(), url.to_string());
        // Turns stored before a section's passages shared one citation list it once per passage.
        if !out.contains(&section) {
            out.push(section);
        }
    }
    out
}

/// How often each value occurs, most frequent first.
pub fn tally<'a>(values: impl Iterator<Item = &'a str>) -> Vec<(String, usize)> {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for v in values {
        *counts.entry(v).or_default() += 1;
    }
    let mut out: Vec<(String, usize)> = counts
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    out.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(v: &[f32]) -> Vec<f32> {
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.iter().map(|x| x / n).collect()
    }

    #[test]
    fn near_vectors_group_and_far_ones_stay_apart() {
        let vectors = vec![
            unit(&[1.0, 0.0, 0.0]),
            unit(&[0.0, 1.0, 0.0]),
            unit(&[0.95, 0.1, 0.0]),
            unit(&[0.0, 0.0, 1.0]),
            unit(&[0.9, 0.0, 0.2]),
            unit(&[0.05, 1.0, 0.0]),
        ];
        let groups = cluster(&vectors, 0.9);
        assert_eq!(groups, vec![vec![0, 2, 4], vec![1, 5], vec![3]]);
        // A threshold nothing clears leaves every question alone; one everything clears, one group.
        assert_eq!(cluster(&vectors, 1.1).len(), 6);
        assert_eq!(cluster(&vectors, -1.0).len(), 1);
        assert!(cluster(&[], 0.5).is_empty());
    }

    #[test]
    fn average_linkage_does_not_chain() {
        // a~b and b~c are close, a and c are not: single linkage would chain all three.
        let a = unit(&[1.0, 0.0]);
        let b = unit(&[0.8, 0.6]);
        let c = unit(&[0.28, 0.96]);
        let groups = cluster(&[a, b, c], 0.8);
        assert_eq!(groups.len(), 2, "{groups:?}");
    }

    #[test]
    fn offered_sections_come_from_the_stored_citations() {
        let json = r#"[{"n":1,"manual":"vp300-service","manual_title":"T","revision":"C","section":"8 Fault codes","url":"/m/vp300-service#fault-codes","snippet":"x"}]"#;
        assert_eq!(
            offered(json),
            vec![(
                "vp300-service".to_string(),
                "8 Fault codes".to_string(),
                "/m/vp300-service#fault-codes".to_string()
            )]
        );
        let twice = format!(
            "[{},{}]",
            &json[1..json.len() - 1],
            &json[1..json.len() - 1]
        );
        assert_eq!(offered(&twice), offered(json), "one section, counted once");
        assert!(offered("not json").is_empty());
        assert_eq!(
            tally(["a", "b", "a"].into_iter()),
            vec![("a".to_string(), 2), ("b".to_string(), 1)]
        );
    }
}

/// One group of questions as the view and the CSV show it.
#[derive(Debug, Clone)]
pub struct GapGroup {
    pub count: usize,
    /// Distinct questions, newest first.
    pub questions: Vec<String>,
    pub assets: Vec<(String, usize)>,
    /// (manual, section, url) offered, with how often.
    pub offered: Vec<((String, String, String), usize)>,
    pub mean_confidence: f64,
    pub escalated: usize,
    pub thumbs_down: usize,
    pub last_asked: String,
    /// The group's turn ids, comma-separated: what "Mark handled" hides.
    pub turn_ids: String,
}

/// Groups `turns` (newest first) by what they ask; largest group first.
pub fn group(turns: &[GapTurn], vectors: &[Vec<f32>], threshold: f32) -> Vec<GapGroup> {
    cluster(vectors, threshold)
        .into_iter()
        .map(|members| {
            let of: Vec<&GapTurn> = members.iter().map(|&i| &turns[i]).collect();
            let mut questions: Vec<String> = Vec::new();
            for t in &of {
                if !questions
                    .iter()
                    .any(|q| q.eq_ignore_ascii_case(&t.question))
                {
                    questions.push(t.question.clone());
                }
            }
            let mut offered_counts: BTreeMap<(String, String, String), usize> = BTreeMap::new();
            for t in &of {
                for o in offered(&t.citations) {
                    *offered_counts.entry(o).or_default() += 1;
                }
            }
            let mut offered: Vec<_> = offered_counts.into_iter().collect();
            offered.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
            GapGroup {
                count: of.len(),
                questions,
                assets: tally(of.iter().map(|t| t.asset_id.as_str())),
                offered,
                mean_confidence: of.iter().map(|t| t.confidence).sum::<f64>() / of.len() as f64,
                escalated: of.iter().filter(|t| t.escalated).count(),
                thumbs_down: of.iter().filter(|t| t.feedback == Some(-1)).count(),
                last_asked: of.iter().map(|t| t.at.clone()).max().unwrap_or_default(),
                turn_ids: of
                    .iter()
                    .map(|t| t.id.to_string())
                    .collect::<Vec<_>>()
                    .join(","),
            }
        })
        .collect()
}

/// Questions considered per view (the newest).
const MAX_TURNS: i64 = 500;

#[derive(Debug, Default, serde::Deserialize)]
pub struct GapsQuery {
    /// Look back this many days (1-395, default 30). Text, so a mistyped value (`-5`, `abc`) gets
    /// the nearest sensible view instead of a bare 400.
    #[serde(default)]
    pub days: Option<String>,
}

/// What one view of the gaps holds.
struct Gaps {
    groups: Vec<GapGroup>,
    patient_questions: i64,
    /// Whether `MAX_TURNS` cut the period short (older questions were not grouped).
    truncated: bool,
}

/// The start of the last `days` days, as stored times compare.
fn since_days(days: u32) -> String {
    (chrono::Utc::now() - chrono::Duration::days(i64::from(days)))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// The groups for the last `days` days, and how many patient questions were asked meanwhile.
async fn groups_for(app: &crate::AppState, days: u32) -> crate::Result<Gaps> {
    let since = since_days(days);
    let turns = gap_turns(&app.store, &since, app.chat.model.threshold, MAX_TURNS + 1).await?;
    let patient_questions: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM audit_log WHERE action = 'chat.asked' AND at >= ?",
    )
    .bind(&since)
    .fetch_one(app.store.pool())
    .await?;
    let truncated = turns.len() as i64 > MAX_TURNS;
    let mut turns = turns;
    turns.truncate(MAX_TURNS as usize);
    if turns.is_empty() {
        return Ok(Gaps {
            groups: Vec::new(),
            patient_questions,
            truncated,
        });
    }
    let embedder = app.embedder.clone();
    let threshold = same_question_threshold(app.embedder.model_id());
    // Embedding and grouping hundreds of questions is CPU work: off the async workers.
    let groups = tokio::task::spawn_blocking(move || {
        let questions: Vec<&str> = turns.iter().map(|t| t.question.as_str()).collect();
        let mut vectors = Vec::with_capacity(questions.len());
        for batch in questions.chunks(64) {
            vectors.extend(embedder.embed_queries(batch)?);
        }
        Ok::<_, scanaid_models::ModelError>(group(&turns, &vectors, threshold))
    })
    .await?
    .map_err(|e| crate::ServerError::Index(scanaid_indexer::IndexError::from(e)))?;
    Ok(Gaps {
        groups,
        patient_questions,
        truncated,
    })
}

/// The days asked for, at most as many as chat turns are kept (a longer view would promise
/// questions that retention has deleted).
fn days_of(query: &GapsQuery, app: &crate::AppState) -> u32 {
    let kept = (app.config.retention.chat.as_secs() / 86_400).max(1) as i64;
    match query.days.as_deref().map(|d| d.trim().parse::<i64>()) {
        Some(Ok(days)) => days.clamp(1, kept) as u32,
        _ => 30.min(kept) as u32,
    }
}

/// `GET /admin/gaps`: the groups, for content editors and admins.
pub async fn page(
    axum::extract::State(app): axum::extract::State<crate::AppState>,
    headers: axum::http::HeaderMap,
    crate::http::LenientQuery(query): crate::http::LenientQuery<GapsQuery>,
) -> std::result::Result<axum::response::Response, crate::AppError> {
    use askama::Template;
    use axum::response::IntoResponse;
    let me = match crate::content_admin::require_editor(&app, &headers).await? {
        Ok(me) => me,
        Err(r) => return Ok(r),
    };
    let days = days_of(&query, &app);
    let gaps = groups_for(&app, days).await?;
    let html = crate::views::GapsPage {
        lang: "en".to_string(),
        csrf: me.csrf.clone(),
        me: crate::views::Me::of(&me),
        days,
        max_days: (app.config.retention.chat.as_secs() / 86_400).max(1),
        groups: gaps.groups,
        patient_questions: gaps.patient_questions,
        truncated: gaps.truncated.then_some(MAX_TURNS),
        handled: handled_batches(&app.store, days).await?,
    }
    .render()?;
    Ok((
        [(axum::http::header::CACHE_CONTROL, "no-store")],
        axum::response::Html(html),
    )
        .into_response())
}

#[derive(Debug, serde::Deserialize, Default)]
pub struct HandledForm {
    #[serde(default)]
    pub csrf: String,
    /// Turn ids, comma-separated (a group's `turn_ids`).
    #[serde(default)]
    pub turns: String,
    #[serde(default)]
    pub days: String,
}

/// Most turns one "Mark handled" takes (a group holds at most `MAX_TURNS`).
const MAX_HANDLED: usize = MAX_TURNS as usize;

/// `POST /admin/gaps/handled`: an editor wrote or fixed the section a group asks for; its turns
/// leave the view (asked again, the question comes back as a new turn). Ids that are not chat
/// turns are skipped; a form that is not a list of ids changes nothing and says so.
pub async fn mark_handled(
    axum::extract::State(app): axum::extract::State<crate::AppState>,
    headers: axum::http::HeaderMap,
    crate::http::LenientForm(form): crate::http::LenientForm<HandledForm>,
) -> std::result::Result<axum::response::Response, crate::AppError> {
    let me = match crate::content_admin::require_editor_posting(&app, &headers, &form.csrf).await? {
        Ok(me) => me,
        Err(r) => return Ok(r),
    };
    let ids: Option<Vec<i64>> = form
        .turns
        .split(',')
        .map(|id| id.trim().parse::<i64>().ok())
        .collect();
    let Some(ids) = ids.filter(|ids| !ids.is_empty() && ids.len() <= MAX_HANDLED) else {
        return crate::content_admin::message(
            axum::http::StatusCode::UNPROCESSABLE_ENTITY,
            "Nothing was marked",
            "The form did not name the group's questions. Reload the page and try again.",
            "/admin/gaps",
        );
    };
    let at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let mut tx = app
        .store
        .pool()
        .begin()
        .await
        .map_err(crate::ServerError::from)?;
    let mut marked = 0;
    for id in &ids {
        // Only questions the view can show (put to the assistant): what people wrote to agents
        // is not the content team's to mark, nor to read back in the list of markings.
        marked += sqlx::query(
            "INSERT OR IGNORE INTO gap_handled (turn_id, handled_by, handled_at)
             SELECT id, ?, ? FROM chat_turns WHERE id = ? AND (kind IS NULL OR kind IN ('answered', 'unsure'))",
        )
        .bind(&me.username)
        .bind(&at)
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(crate::ServerError::from)?
        .rows_affected();
    }
    // In the content audit trail: how many, not what was asked (the audit trail outlives the
    // chat turns, which the retention limit deletes).
    crate::content::content_audit_in(
        &mut tx,
        &me.username,
        "gap.handled",
        None,
        None,
        &format!("{marked} question(s) marked handled"),
    )
    .await?;
    tx.commit().await.map_err(crate::ServerError::from)?;
    tracing::info!(editor = %me.username, turns = ids.len(), "gap marked handled");
    Ok(back_to_the_view(&form.days))
}

/// The view again, over the days the form was sent from.
fn back_to_the_view(days: &str) -> axum::response::Response {
    use axum::response::IntoResponse;
    let days = days.trim().parse::<u32>().unwrap_or(30);
    axum::response::Redirect::to(&format!("/admin/gaps?days={days}")).into_response()
}

/// At most 80 characters of `text`, with an ellipsis when cut.
fn short(text: &str) -> String {
    if text.chars().count() <= 80 {
        return text.to_string();
    }
    format!("{}...", text.chars().take(80).collect::<String>())
}

/// One "Mark handled" click, as the view lists it for undoing.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct HandledBatch {
    pub handled_by: String,
    pub handled_at: String,
    pub count: i64,
    pub example: String,
}

/// The latest markings (at most 20) of the last `days` days, newest first.
async fn handled_batches(
    store: &crate::store::Store,
    days: u32,
) -> crate::Result<Vec<HandledBatch>> {
    let since = since_days(days);
    let batches: Vec<HandledBatch> = sqlx::query_as(
        "SELECT h.handled_by, h.handled_at, COUNT(*) AS count, MAX(t.question) AS example
         FROM gap_handled h JOIN chat_turns t ON t.id = h.turn_id
         WHERE h.handled_at >= ? GROUP BY h.handled_by, h.handled_at
         ORDER BY h.handled_at DESC LIMIT 20",
    )
    .bind(&since)
    .fetch_all(store.pool())
    .await?;
    Ok(batches
        .into_iter()
        .map(|b| HandledBatch {
            example: short(&crate::http::without_contacts(&b.example)),
            ..b
        })
        .collect())
}

#[derive(Debug, serde::Deserialize, Default)]
pub struct UnhandledForm {
    #[serde(default)]
    pub csrf: String,
    /// The marking to undo: who and when (`HandledBatch`).
    #[serde(default)]
    pub by: String,
    #[serde(default)]
    pub at: String,
    #[serde(default)]
    pub days: String,
}

/// `POST /admin/gaps/unhandled`: a marking made by mistake is undone; its questions are back in
/// the view. In the content audit trail.
pub async fn unmark_handled(
    axum::extract::State(app): axum::extract::State<crate::AppState>,
    headers: axum::http::HeaderMap,
    crate::http::LenientForm(form): crate::http::LenientForm<UnhandledForm>,
) -> std::result::Result<axum::response::Response, crate::AppError> {
    let me = match crate::content_admin::require_editor_posting(&app, &headers, &form.csrf).await? {
        Ok(me) => me,
        Err(r) => return Ok(r),
    };
    let mut tx = app
        .store
        .pool()
        .begin()
        .await
        .map_err(crate::ServerError::from)?;
    let undone = sqlx::query("DELETE FROM gap_handled WHERE handled_by = ? AND handled_at = ?")
        .bind(form.by.trim())
        .bind(form.at.trim())
        .execute(&mut *tx)
        .await
        .map_err(crate::ServerError::from)?
        .rows_affected();
    if undone == 0 {
        return crate::content_admin::message(
            axum::http::StatusCode::NOT_FOUND,
            "Nothing to undo",
            "That marking is not there any more (undone already, or its questions were deleted by the retention limit).",
            "/admin/gaps",
        );
    }
    crate::content::content_audit_in(
        &mut tx,
        &me.username,
        "gap.unhandled",
        None,
        None,
        &format!(
            "{undone} question(s) back on the view (marked handled by {} at {})",
            form.by.trim(),
            form.at.trim()
        ),
    )
    .await?;
    tx.commit().await.map_err(crate::ServerError::from)?;
    Ok(back_to_the_view(&form.days))
}

/// `GET /admin/gaps.csv`: the same groups as CSV.
pub async fn csv(
    axum::extract::State(app): axum::extract::State<crate::AppState>,
    headers: axum::http::HeaderMap,
    crate::http::LenientQuery(query): crate::http::LenientQuery<GapsQuery>,
) -> std::result::Result<axum::response::Response, crate::AppError> {
    use axum::response::IntoResponse;
    if let Err(r) = crate::content_admin::require_editor(&app, &headers).await? {
        return Ok(r);
    }
    let days = days_of(&query, &app);
    let groups = groups_for(&app, days).await?.groups;
    let mut writer = ::csv::Writer::from_writer(Vec::new());
    let header = [
        "group",
        "times_asked",
        "example",
        "questions",
        "assets",
        "sections_offered",
        "mean_confidence",
        "escalated",
        "thumbs_down",
        "last_asked",
    ];
    writer.write_record(header).expect("writing to memory");
    for (i, g) in groups.iter().enumerate() {
        let join = |items: Vec<String>| items.join(" | ");
        let row = [
            (i + 1).to_string(),
            g.count.to_string(),
            g.questions[0].clone(),
            join(g.questions.clone()),
            join(g.assets.iter().map(|(a, n)| format!("{a} ({n})")).collect()),
            join(
                g.offered
                    .iter()
                    .map(|((m, s, _), n)| format!("{m}: {s} ({n})"))
                    .collect(),
            ),
            format!("{:.3}", g.mean_confidence),
            g.escalated.to_string(),
            g.thumbs_down.to_string(),
            g.last_asked.clone(),
        ];
        writer
            .write_record(row.iter().map(|cell| defuse(cell)))
            .expect("writing to memory");
    }
    let body = writer.into_inner().expect("writing to memory");
    Ok((
        [
            (axum::http::header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (
                axum::http::header::CONTENT_DISPOSITION,
                "attachment; filename=\"content-gaps.csv\"",
            ),
            (axum::http::header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response())
}

/// A cell a spreadsheet would run as a formula (questions are typed by the public) gets a leading
/// apostrophe.
fn defuse(cell: &str) -> String {
    if cell.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{cell}")
    } else {
        cell.to_string()
    }
}
