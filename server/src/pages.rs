//! What a role page shows, taken from the indexed manuals: the sections of the asset's manuals that the
//! role may read, in the served language, with the ones that role needs first (fault codes for a
//! technician, quick start and safety for an operator) shown in full.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use scanaid_indexer::{Chunk, SearchIndex};

use crate::roles::Role;
use crate::store::ResolvedCode;

/// The manuals an asset's pages, chat and search draw on: those `assets.toml` lists for it, then
/// every public manual whose front matter names its model (a manual published for the VP-300
/// reaches every VP-300 without a registry edit or a restart), each once.
pub fn asset_manuals(listed: &[String], model: &str, index: &SearchIndex) -> Vec<String> {
    let mut manuals = listed.to_vec();
    for manual in index.manuals_for_model(model) {
        if !manuals.contains(manual) {
            manuals.push(manual.clone());
        }
    }
    manuals
}

/// One top-level section of a manual (a level-2 heading and everything under it).
#[derive(Debug, Clone)]
pub struct SectionView {
    pub manual_id: String,
    pub manual_title: String,
    pub revision: String,
    pub title: String,
    pub anchor: String,
    /// Rendered HTML of the first chunks (empty in the table of contents).
    pub html: String,
    /// True when the section has more than `html` shows.
    pub truncated: bool,
    /// The manual's language: a section in another language than the page's is marked so, and
    /// read aloud in its own.
    pub language: String,
}

#[derive(Debug, Clone, Default)]
pub struct PageContent {
    pub highlights: Vec<SectionView>,
    pub contents: Vec<SectionView>,
    /// Languages the asset's manuals are available in.
    pub languages: Vec<String>,
}

/// Sections a role sees first, by keywords of their headings (English and Spanish), most important first.
fn priorities(role: Role) -> &'static [&'static str] {
    match role {
        Role::Technician => &[
            "fault",
            "code",
            "alarm",
            "código",
            "error",
            "troubleshoot",
            "problema",
            "maintenance",
            "mantenimiento",
            "procedure",
            "repair",
            "parts",
            "repuesto",
            "pieza",
        ],
        Role::Biomed => &[
            "fault",
            "code",
            "alarm",
            "código",
            "performance verification",
            "calibrat",
            "maintenance",
            "mantenimiento",
            "troubleshoot",
            "commissioning",
            "parts",
            "repuesto",
        ],
        Role::Clinician => &[
            "alarm",
            "alarma",
            "clinical",
            "clínic",
            "quick start",
            "inicio rápido",
            "safety",
            "seguridad",
        ],
        Role::Operator
        | Role::Anonymous
        | Role::Agent
        | Role::Editor
        | Role::Admin
        | Role::Patient => &[
            "quick start",
            "inicio rápido",
            "safety",
            "seguridad",
            "alarm",
            "alarma",
            "operation",
            "funcionamiento",
            "cleaning",
            "limpieza",
        ],
    }
}

/// Page content per (manuals, role, variant, language) for one index generation. Building it walks
/// every chunk and renders markdown, which cost more than everything else in a scan together; the
/// result only changes when a new generation is served, so it is built once and shared.
#[derive(Default)]
pub struct PageCache {
    state: RwLock<CacheState>,
}

/// Pages by the hash of their key, each bucket holding the full keys: a scan looks its page up with
/// the key's parts as borrowed, without building a key (a copy of the manual ids and the language).
#[derive(Default)]
struct CacheState {
    generation: String,
    pages: HashMap<u64, Vec<(PageKey, Arc<PageContent>)>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct PageKey {
    manual_ids: Vec<String>,
    role: Role,
    variant: Role,
    language: String,
}

impl PageKey {
    fn is(&self, manual_ids: &[String], role: Role, variant: Role, language: &str) -> bool {
        self.role == role
            && self.variant == variant
            && self.language == language
            && self.manual_ids == manual_ids
    }
}

fn key_hash(manual_ids: &[String], role: Role, variant: Role, language: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (manual_ids, role, variant, language).hash(&mut h);
    h.finish()
}

/// Entries kept before the cache starts over. Keys are bounded by assets x roles x languages, so this
/// is a guard against a registry far larger than expected, not an eviction policy.
const MAX_CACHED_PAGES: usize = 4096;

impl PageCache {
    /// The content `role_page_content` gives, built on first use per generation.
    pub fn content(
        &self,
        index: &SearchIndex,
        manual_ids: &[String],
        role: Role,
        variant: Role,
        language: &str,
    ) -> Arc<PageContent> {
        let hash = key_hash(manual_ids, role, variant, language);
        {
            let state = self.state.read().expect("page cache lock");
            if state.generation == index.generation {
                let bucket = state.pages.get(&hash).map_or(&[][..], |b| b.as_slice());
                if let Some((_, found)) = bucket
                    .iter()
                    .find(|(k, _)| k.is(manual_ids, role, variant, language))
                {
                    return found.clone();
                }
            }
        }
        let built = Arc::new(role_page_content(
            index, manual_ids, role, variant, language,
        ));
        let mut state = self.state.write().expect("page cache lock");
        let cached: usize = state.pages.values().map(Vec::len).sum();
        if state.generation != index.generation || cached >= MAX_CACHED_PAGES {
            state.generation = index.generation.clone();
            state.pages.clear();
        }
        let bucket = state.pages.entry(hash).or_default();
        // Another scan may have built the same page meanwhile; keep one copy.
        bucket.retain(|(k, _)| !k.is(manual_ids, role, variant, language));
        bucket.push((
            PageKey {
                manual_ids: manual_ids.to_vec(),
                role,
                variant,
                language: language.to_string(),
            },
            built.clone(),
        ));
        built
    }
}

/// Most sections shown in full, and most chunks of each, so the first render stays small.
const MAX_HIGHLIGHTS: usize = 3;
const MAX_CHUNKS_PER_HIGHLIGHT: usize = 3;

/// `role` decides what may be read; `variant` (a rule's page variant, usually the same role) decides
/// which sections come first. A variant never widens what the role may read.
pub fn role_page_content(
    index: &SearchIndex,
    manual_ids: &[String],
    role: Role,
    variant: Role,
    language: &str,
) -> PageContent {
    let mine: Vec<&Chunk> = index
        .chunks()
        .iter()
        .filter(|c| c.owner.is_none() && manual_ids.contains(&c.manual_id))
        .collect();
    let mut languages: Vec<String> = mine.iter().map(|c| c.language.clone()).collect();
    languages.sort();
    languages.dedup();
    let readable: Vec<&Chunk> = mine
        .into_iter()
        .filter(|c| role.may_read(&c.audiences))
        .collect();
    let shown = manuals_in_language(&readable, role, language);
    let visible: Vec<&Chunk> = readable
        .into_iter()
        .filter(|c| shown.contains(&c.manual_id))
        .collect();
    let groups = top_level_sections(&visible);
    let keywords = priorities(variant);
    let mut ranked: Vec<(usize, usize)> = groups
        .iter()
        .enumerate()
        .filter_map(|(i, g)| {
            let title = g.title.to_lowercase();
            let words: Vec<&str> = title.split(|c: char| !c.is_alphanumeric()).collect();
            // A one-word keyword begins a word of the heading ("code" finds "Alarm codes", not
            // "Barcode scanning"); a phrase is found anywhere.
            keywords
                .iter()
                .position(|k| {
                    if k.contains(' ') {
                        title.contains(k)
                    } else {
                        words.iter().any(|w| w.starts_with(k))
                    }
                })
                .map(|rank| (rank, i))
        })
        .collect();
    ranked.sort();
    let chosen: Vec<usize> = ranked
        .iter()
        .take(MAX_HIGHLIGHTS)
        .map(|&(_, i)| i)
        .collect();
    let mut content = PageContent {
        languages,
        ..PageContent::default()
    };
    for &i in &chosen {
        let g = &groups[i];
        let shown = &g.chunks[..g.chunks.len().min(MAX_CHUNKS_PER_HIGHLIGHT)];
        let mut markdown: Vec<String> = Vec::new();
        let mut previous: Option<&[String]> = None;
        for c in shown {
            markdown.push(section_markdown(c, g.depth, previous));
            previous = Some(&c.heading_path);
        }
        content.highlights.push(SectionView {
            html: markdown_to_html(&markdown.join("\n\n")),
            truncated: g.chunks.len() > shown.len(),
            ..g.view()
        });
    }
    for (i, g) in groups.iter().enumerate() {
        if !chosen.contains(&i) {
            content.contents.push(g.view());
        }
    }
    content
}

struct Group<'a> {
    title: String,
    depth: usize,
    chunks: Vec<&'a Chunk>,
}

impl Group<'_> {
    fn view(&self) -> SectionView {
        let first = self.chunks[0];
        SectionView {
            manual_id: first.manual_id.clone(),
            manual_title: first.manual_title.clone(),
            revision: first.revision.clone(),
            title: self.title.clone(),
            anchor: first.anchor.clone(),
            html: String::new(),
            truncated: false,
            language: first.language.clone(),
        }
    }
}

/// Groups chunks (in manual order) by their level-2 heading; the manual's H1 is the first path element.
fn top_level_sections<'a>(chunks: &[&'a Chunk]) -> Vec<Group<'a>> {
    let mut groups: Vec<Group<'a>> = Vec::new();
    let mut last_key: Option<(String, String)> = None;
    for &chunk in chunks {
        let depth = chunk.heading_path.len().min(2);
        if depth == 0 {
            continue; // the preamble before any heading
        }
        let title = chunk.heading_path[depth - 1].clone();
        let key = (chunk.manual_id.clone(), title.clone());
        if last_key.as_ref() != Some(&key) {
            groups.push(Group {
                title,
                depth,
                chunks: Vec::new(),
            });
            last_key = Some(key);
        }
        groups.last_mut().expect("pushed above").chunks.push(chunk);
    }
    groups
}

/// What one manual offers a reader: its language, equipment models, and which of the reader's
/// audiences its readable sections are written for.
struct ManualOffer<'a> {
    id: &'a str,
    language: &'a str,
    models: std::collections::BTreeSet<&'a str>,
    audiences: std::collections::BTreeSet<&'static str>,
}

/// The manuals to show from `readable` (the chunks `role` may read) for a reader of `language`:
/// every manual in that language, and a manual in another language unless one in that language
/// covers it (shares an equipment model, or neither names one, and serves every audience of the
/// reader's that it serves). So a Spanish-reading technician still gets the service manual that
/// exists only in English, while a Spanish-reading operator gets the Spanish operator manual and
/// not the English service manual's operator sections beside it.
fn manuals_in_language<'a>(readable: &[&'a Chunk], role: Role, language: &str) -> Vec<String> {
    let mut offers: Vec<ManualOffer<'a>> = Vec::new();
    for c in readable {
        let at = match offers.iter().position(|m| m.id == c.manual_id) {
            Some(at) => at,
            None => {
                offers.push(ManualOffer {
                    id: &c.manual_id,
                    language: &c.language,
                    models: Default::default(),
                    audiences: Default::default(),
                });
                offers.len() - 1
            }
        };
        let offer = &mut offers[at];
        offer.models.extend(c.models.iter().map(String::as_str));
        // A section without an audience is for everyone, so for every audience of the reader's.
        offer.audiences.extend(
            role.audiences()
                .iter()
                .copied()
                .filter(|a| c.audiences.is_empty() || c.audiences.iter().any(|x| x == a)),
        );
    }
    let covers = |n: &ManualOffer<'_>, m: &ManualOffer<'_>| {
        let same_equipment = (n.models.is_empty() && m.models.is_empty())
            || n.models.intersection(&m.models).next().is_some();
        same_equipment && m.audiences.is_subset(&n.audiences)
    };
    offers
        .iter()
        .filter(|m| {
            m.language == language
                || !offers
                    .iter()
                    .any(|n| n.language == language && covers(n, m))
        })
        .map(|m| m.id.to_string())
        .collect()
}

/// A chunk's markdown, headed by the sub-heading it sits under when that differs from the previous
/// chunk's, so steps keep their procedure's name and a long table is not re-titled at every chunk.
fn section_markdown(chunk: &Chunk, group_depth: usize, previous: Option<&[String]>) -> String {
    match chunk.heading_path.get(group_depth..) {
        Some(rest) if !rest.is_empty() && previous != Some(chunk.heading_path.as_slice()) => {
            format!("#### {}\n\n{}", rest.join(" › "), chunk.text)
        }
        _ => chunk.text.clone(),
    }
}

/// Whether `markdown` opens with a level-1 heading that is `title` (a leaflet naming itself), so a
/// page showing it need not put the title above it a second time. Any other opening heading ("#
/// Medicación" in a care team's note) leaves the title to be shown.
pub fn opens_with_title(markdown: &str, title: &str) -> bool {
    use pulldown_cmark::{Event, HeadingLevel, Options, Parser, Tag, TagEnd};
    let mut events = Parser::new_ext(markdown, Options::ENABLE_HEADING_ATTRIBUTES);
    if !matches!(
        events.next(),
        Some(Event::Start(Tag::Heading {
            level: HeadingLevel::H1,
            ..
        }))
    ) {
        return false;
    }
    let mut heading = String::new();
    for event in events {
        match event {
            Event::End(TagEnd::Heading(_)) => break,
            Event::Text(text) | Event::Code(text) => heading.push_str(&text),
            _ => {}
        }
    }
    heading.trim().to_lowercase() == title.trim().to_lowercase()
}

/// Renders manual markdown. Raw HTML in a manual is shown as text, never passed through: manuals are
/// edited by many hands and a page must not run what someone pasted. For the same reason a link
/// keeps its target only when it is a web, mail or phone address or a path on this site
/// (`javascript:` and `data:` links become their plain text), and an image only when it is on
/// this site: an image from elsewhere would tell that server who is reading (its alt text is shown).
pub fn markdown_to_html(markdown: &str) -> String {
    use pulldown_cmark::{html, Event, Options, Parser, Tag, TagEnd};
    let mut dropped_link = false;
    let mut dropped_image = false;
    let parser = Parser::new_ext(
        markdown,
        Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH | Options::ENABLE_HEADING_ATTRIBUTES,
    )
    .filter_map(|event| match event {
        Event::Html(text) | Event::InlineHtml(text) => Some(Event::Text(text)),
        // `{#id .class key=value}` after a heading names its section for the chunker; written out,
        // it would put any class, id or attribute on the page (`hidden`, an id the page's script
        // looks up). Sections carry their anchor on the element around them.
        Event::Start(Tag::Heading { level, .. }) => Some(Event::Start(Tag::Heading {
            level,
            id: None,
            classes: Vec::new(),
            attrs: Vec::new(),
        })),
        Event::Start(Tag::Link { ref dest_url, .. }) if !safe_link(dest_url) => {
            dropped_link = true;
            None
        }
        Event::End(TagEnd::Link) if dropped_link => {
            dropped_link = false;
            None
        }
        Event::Start(Tag::Image { ref dest_url, .. }) if !on_this_site(dest_url) => {
            dropped_image = true;
            None
        }
        Event::End(TagEnd::Image) if dropped_image => {
            dropped_image = false;
            None
        }
        other => Some(other),
    });
    let mut out = String::new();
    html::push_html(&mut out, parser);
    out
}

/// A path on this site or an anchor on this page (not `//host/...`, which is another server).
fn on_this_site(url: &str) -> bool {
    let url = url.trim();
    (url.starts_with('/') && !url.starts_with("//")) || url.starts_with('#')
}

/// A link target a reader may follow: this site, or an http(s), mailto or tel address.
fn safe_link(url: &str) -> bool {
    let lower = url.trim().to_ascii_lowercase();
    on_this_site(&lower)
        || ["https://", "http://", "mailto:", "tel:"]
            .iter()
            .any(|scheme| lower.starts_with(scheme))
}

/// The sections of one manual a role may read, for the manual page: (heading path, anchor, html).
pub fn manual_sections(
    index: &SearchIndex,
    manual_id: &str,
    role: Role,
) -> Vec<(Vec<String>, String, String)> {
    sections_of(
        index.chunks().iter().filter(|c| {
            c.manual_id == manual_id && c.owner.is_none() && role.may_read(&c.audiences)
        }),
    )
    .into_iter()
    .map(|s| (s.heading_path, s.anchor, s.html))
    .collect()
}

/// One section of a manual as its page shows it.
pub struct RenderedSection {
    pub heading_path: Vec<String>,
    pub anchor: String,
    /// Who may read it (its chunks' audiences).
    pub audiences: Vec<String>,
    pub html: String,
}

/// A manual's chunks, in order, grouped back into their sections and rendered: what `/m/{id}`
/// shows of the served index, and the editor's preview shows of a text not yet published (the same
/// code, so the preview is what readers will get).
pub fn sections_of<'a>(chunks: impl IntoIterator<Item = &'a Chunk>) -> Vec<RenderedSection> {
    let mut out: Vec<RenderedSection> = Vec::new();
    let mut markdown = String::new();
    let mut current: Option<(Vec<String>, String, Vec<String>)> = None;
    let flush = |current: &mut Option<(Vec<String>, String, Vec<String>)>,
                 markdown: &mut String,
                 out: &mut Vec<RenderedSection>| {
        if let Some((heading_path, anchor, audiences)) = current.take() {
            out.push(RenderedSection {
                heading_path,
                anchor,
                audiences,
                html: markdown_to_html(markdown),
            });
        }
        markdown.clear();
    };
    for chunk in chunks {
        let same = current.as_ref().is_some_and(|(path, anchor, _)| {
            *path == chunk.heading_path && *anchor == chunk.anchor
        });
        if !same {
            flush(&mut current, &mut markdown, &mut out);
            current = Some((
                chunk.heading_path.clone(),
                chunk.anchor.clone(),
                chunk.audiences.clone(),
            ));
        }
        markdown.push_str(&chunk.text);
        markdown.push_str("\n\n");
    }
    flush(&mut current, &mut markdown, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_document_opening_with_its_title_is_told_apart_from_one_opening_with_another_heading() {
        let title = "Going Home After Your Knee Replacement";
        assert!(opens_with_title(
            "# Going home after your knee replacement {#top}\n\nText.",
            title
        ));
        assert!(!opens_with_title("# Medicines\n\nTake one a day.", title));
        assert!(!opens_with_title(
            "Text first.\n\n# Going Home After Your Knee Replacement",
            title
        ));
        assert!(!opens_with_title(
            "## Going Home After Your Knee Replacement",
            title
        ));
        assert!(!opens_with_title("", title));
    }

    fn resolved(code: &str) -> Arc<ResolvedCode> {
        Arc::new(ResolvedCode {
            code: crate::store::CodeRecord {
                code: code.to_string(),
                kind: "asset".to_string(),
                asset_id: None,
                placement: "nameplate".to_string(),
                retired_at: None,
            },
            asset: None,
            site: None,
            queue: None,
            queue_timezone: None,
            queue_windows: None,
            manual_ids: Vec::new(),
        })
    }

    #[test]
    fn a_rendered_page_is_reused_only_for_the_same_registry_entry_and_generation() {
        let cache = RenderedPages::default();
        let entry = resolved("abc12345");
        let key = RenderKey {
            code: "abc12345".to_string(),
            role: Role::Technician,
            variant: Role::Technician,
            language: "en".to_string(),
            signed_in: true,
            on_call_first: false,
        };
        assert!(cache.get("g1", &entry, &key).is_none());
        cache.put("g1", entry.clone(), key.clone(), "page one".into());
        assert_eq!(cache.get("g1", &entry, &key).unwrap(), "page one");
        // Another role, language or variant is another page.
        let operator = RenderKey {
            role: Role::Operator,
            variant: Role::Operator,
            ..key.clone()
        };
        assert!(cache.get("g1", &entry, &operator).is_none());
        let spanish = RenderKey {
            language: "es".to_string(),
            ..key.clone()
        };
        assert!(cache.get("g1", &entry, &spanish).is_none());
        // The registry was reloaded (an equal but new entry): rendered again, never the old page.
        assert!(cache.get("g1", &resolved("abc12345"), &key).is_none());
        // A new index generation: rendered again.
        assert!(cache.get("g2", &entry, &key).is_none());
        cache.put("g2", entry.clone(), key.clone(), "page two".into());
        assert_eq!(cache.get("g2", &entry, &key).unwrap(), "page two");
        assert!(cache.get("g1", &entry, &key).is_none());
    }

    #[test]
    fn raw_html_in_a_manual_is_escaped() {
        let html = markdown_to_html("Hello <script>alert(1)</script> **bold**");
        assert!(!html.contains("<script>"), "{html}");
        assert!(html.contains("&lt;script&gt;"), "{html}");
        assert!(html.contains("<strong>bold</strong>"), "{html}");
    }

    #[test]
    fn heading_attributes_never_reach_the_page() {
        let html = markdown_to_html(
            "> ## Step {#reply-12 .error hidden onmouseover=alert(1)}\n\n#### Reset {data-x=y}\n",
        );
        assert!(html.contains("<h2>Step</h2>"), "{html}");
        assert!(html.contains("<h4>Reset</h4>"), "{html}");
        for leaked in ["reply-12", "error", "hidden", "onmouseover", "data-x"] {
            assert!(!html.contains(leaked), "{leaked} in {html}");
        }
    }

    #[test]
    fn only_safe_links_and_this_sites_images_keep_their_targets() {
        let html = markdown_to_html(
            "[x](javascript:alert(1)) [y](JavaScript:alert(2)) [d](data:text/html,hi) \
             [web](https://example.org/a) [call](tel:+15551234) [here](/m/vp300-service#alarms) \
             ![tracker](http://evil.example/p.png) ![pump](/static/pump.png) ![far](//evil.example/q.png)",
        );
        for bad in ["javascript:", "JavaScript:", "data:", "evil.example"] {
            assert!(!html.contains(bad), "{bad} in {html}");
        }
        // Dropped links and images leave their text.
        assert!(html.starts_with("<p>x y d <a"), "{html}");
        assert!(
            html.contains(" tracker <img") && html.contains(" far</p>"),
            "{html}"
        );
        assert!(
            html.contains(r#"<a href="https://example.org/a">web</a>"#),
            "{html}"
        );
        assert!(
            html.contains(r#"<a href="tel:+15551234">call</a>"#),
            "{html}"
        );
        assert!(
            html.contains(r#"<a href="/m/vp300-service#alarms">here</a>"#),
            "{html}"
        );
        assert!(
            html.contains(r#"<img src="/static/pump.png" alt="pump""#),
            "{html}"
        );
    }

    #[test]
    fn tables_render() {
        let html = markdown_to_html("| Code | Meaning |\n|---|---|\n| E-204 | Door open |");
        assert!(html.contains("<td>E-204</td>"), "{html}");
    }
}

/// Whole rendered role pages, per index generation, so a repeated scan is a hash lookup and a copy of
/// a reference-counted buffer instead of a template render (measured: the render, its escaping and
/// its allocations were about a tenth of a scan's CPU). Entries hold the resolved code they were
/// rendered from and count only for that same value: a registry change (a new table) misses.
#[derive(Default)]
pub struct RenderedPages {
    state: RwLock<RenderedState>,
}

#[derive(Default)]
struct RenderedState {
    generation: String,
    pages: HashMap<RenderKey, (Arc<ResolvedCode>, axum::body::Bytes)>,
}

/// Everything besides the code's registry entry and the index that a role page depends on.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RenderKey {
    pub code: String,
    pub role: Role,
    pub variant: Role,
    pub language: String,
    pub signed_in: bool,
    pub on_call_first: bool,
}

impl RenderedPages {
    pub fn get(
        &self,
        generation: &str,
        resolved: &Arc<ResolvedCode>,
        key: &RenderKey,
    ) -> Option<axum::body::Bytes> {
        let state = self.state.read().ok()?;
        if state.generation != generation {
            return None;
        }
        state
            .pages
            .get(key)
            .filter(|(from, _)| Arc::ptr_eq(from, resolved))
            .map(|(_, body)| body.clone())
    }

    pub fn put(
        &self,
        generation: &str,
        resolved: Arc<ResolvedCode>,
        key: RenderKey,
        body: axum::body::Bytes,
    ) {
        let Ok(mut state) = self.state.write() else {
            return;
        };
        if state.generation != generation || state.pages.len() >= MAX_CACHED_PAGES {
            state.generation = generation.to_string();
            state.pages.clear();
        }
        state.pages.insert(key, (resolved, body));
    }
}
