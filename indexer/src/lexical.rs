//! The BM25 leg: a tantivy index of the chunks. Stemmed text with stop words removed, the manual
//! title and heading path in a field of their own (weighted), an exact field for identifiers (error
//! codes, part and model numbers), and raw metadata fields that filters match inside the query.
//!
//! Each chunk is analysed by the rules of its language (`Analysis`): Spanish words stemmed as English
//! ones never meet the Spanish a person types. The languages are separate BM25 collections: their own
//! fields, and their own statistics (a Spanish term's idf counts Spanish chunks only), so an English
//! corpus scores exactly as if no Spanish were indexed (other languages share English's rules and
//! collection). A query is analysed by every language's
//! rules the index holds, each searching its own fields; one chunk is in one language, so the lists
//! merge by score.

use std::collections::HashSet;
use std::path::Path;

use tantivy::collector::TopDocs;
use tantivy::query::{
    Bm25StatisticsProvider, BooleanQuery, BoostQuery, ConstScoreQuery, Occur, Query, TermQuery,
};
use tantivy::schema::{
    Field, IndexRecordOption, Schema, TextFieldIndexing, TextOptions, FAST, STORED, STRING,
};
use tantivy::tokenizer::{
    AsciiFoldingFilter, Language, LowerCaser, RemoveLongFilter, SimpleTokenizer, Stemmer,
    StopWordFilter, TextAnalyzer,
};
use tantivy::{Index, IndexReader, ReloadPolicy, Searcher, TantivyDocument, Term};

use crate::chunking::Chunk;
use crate::error::Result;
use crate::filters::{Filters, OwnerScope, GENERAL_MODEL, PUBLIC_OWNER};
use crate::identifiers::identifiers;
use crate::language::has_primary;
use crate::private_docs::PrivateDocs;

/// Names the analysis chains; stored in each generation's meta and checked on open, so an index is
/// never searched with a different analyzer than it was built with.
pub const ANALYZER_VERSION: &str =
    "en-simple-lower-stop179-porter2+es-simple-lower-stop308-fold-stop95-snowball";

/// Whose rules analyse a text. Spanish has its own; every other language keeps English's (what
/// the index did before it knew languages, and right for identifiers and numbers in any language).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Analysis {
    // The values index per-language arrays (`LexicalIndex::docs`), in `ALL`'s order.
    English = 0,
    Spanish = 1,
}

impl Analysis {
    pub const ALL: [Analysis; 2] = [Analysis::English, Analysis::Spanish];

    /// The analysis for a language tag (`es`, `es-MX`, `en`, `fr` ...).
    pub fn of(language: &str) -> Self {
        if has_primary(language, "es") {
            Analysis::Spanish
        } else {
            Analysis::English
        }
    }

    fn tokenizer_name(self) -> &'static str {
        match self {
            Analysis::English => "scanaid_en",
            Analysis::Spanish => "scanaid_es",
        }
    }

    /// The value of the `analysis` field, and the suffix of this language's field names.
    fn code(self) -> &'static str {
        match self {
            Analysis::English => "en",
            Analysis::Spanish => "es",
        }
    }

    fn analyzer(self) -> TextAnalyzer {
        match self {
            Analysis::English => TextAnalyzer::builder(SimpleTokenizer::default())
                .filter(RemoveLongFilter::limit(40))
                .filter(LowerCaser)
                .filter(StopWordFilter::remove(
                    STOP_WORDS.iter().map(|w| w.to_string()),
                ))
                .filter(Stemmer::new(Language::English))
                .build(),
            // Accents are folded before stemming: people type "bateria" and "como" on a phone
            // for the manual's "batería" and "cómo", and Snowball stems the two spellings apart.
            Analysis::Spanish => TextAnalyzer::builder(SimpleTokenizer::default())
                .filter(RemoveLongFilter::limit(40))
                .filter(LowerCaser)
                .filter(
                    StopWordFilter::new(Language::Spanish)
                        .unwrap_or_else(|| StopWordFilter::remove(Vec::new())),
                )
                .filter(AsciiFoldingFilter)
                .filter(StopWordFilter::remove(
                    SPANISH_EXTRA_STOP_WORDS.iter().map(|w| w.to_string()),
                ))
                .filter(Stemmer::new(Language::Spanish))
                .build(),
        }
    }
}

/// Spanish stop words beyond Snowball's list (which tantivy applies before accents are folded):
/// that list's accented words as a phone types them ("mas", "estan", "tambien"), the question words
/// with their accents folded ("cómo" is not in the list, only "como"), and "puedo", "puede", "debo",
/// "debe", "hago" (English's list has "can", "should", "do"). Kept sorted. Changing a list changes
/// what an index holds: bump `ANALYZER_VERSION`.
const SPANISH_EXTRA_STOP_WORDS: &[&str] = &[
    "adonde",
    "como",
    "cual",
    "cuales",
    "cuando",
    "cuanta",
    "cuantas",
    "cuanto",
    "cuantos",
    "debe",
    "debo",
    "donde",
    "eramos",
    "estabamos",
    "estais",
    "estan",
    "estara",
    "estaran",
    "estaras",
    "estare",
    "estareis",
    "estaria",
    "estariais",
    "estariamos",
    "estarian",
    "estarias",
    "esteis",
    "esten",
    "estes",
    "estuvieramos",
    "estuviesemos",
    "fueramos",
    "fuesemos",
    "habeis",
    "habia",
    "habiais",
    "habiamos",
    "habian",
    "habias",
    "habra",
    "habran",
    "habras",
    "habre",
    "habreis",
    "habria",
    "habriais",
    "habriamos",
    "habrian",
    "habrias",
    "hago",
    "hayais",
    "hubieramos",
    "hubiesemos",
    "mas",
    "mia",
    "mias",
    "mio",
    "mios",
    "puede",
    "puedo",
    "que",
    "quien",
    "quienes",
    "seais",
    "sera",
    "seran",
    "seras",
    "sere",
    "sereis",
    "seria",
    "seriais",
    "seriamos",
    "serian",
    "serias",
    "si",
    "tambien",
    "tendra",
    "tendran",
    "tendras",
    "tendre",
    "tendreis",
    "tendria",
    "tendriais",
    "tendriamos",
    "tendrian",
    "tendrias",
    "teneis",
    "tengais",
    "tenia",
    "teniais",
    "teniamos",
    "tenian",
    "tenias",
    "tuvieramos",
    "tuviesemos",
];

/// English stop words: the NLTK list (179 words). Larger than Lucene's 33-word default because the
/// questions people type ("how can I ...", "what should my ...") are mostly function words.
const STOP_WORDS: &[&str] = &[
    "i",
    "me",
    "my",
    "myself",
    "we",
    "our",
    "ours",
    "ourselves",
    "you",
    "you're",
    "you've",
    "you'll",
    "you'd",
    "your",
    "yours",
    "yourself",
    "yourselves",
    "he",
    "him",
    "his",
    "himself",
    "she",
    "she's",
    "her",
    "hers",
    "herself",
    "it",
    "it's",
    "its",
    "itself",
    "they",
    "them",
    "their",
    "theirs",
    "themselves",
    "what",
    "which",
    "who",
    "whom",
    "this",
    "that",
    "that'll",
    "these",
    "those",
    "am",
    "is",
    "are",
    "was",
    "were",
    "be",
    "been",
    "being",
    "have",
    "has",
    "had",
    "having",
    "do",
    "does",
    "did",
    "doing",
    "a",
    "an",
    "the",
    "and",
    "but",
    "if",
    "or",
    "because",
    "as",
    "until",
    "while",
    "of",
    "at",
    "by",
    "for",
    "with",
    "about",
    "against",
    "between",
    "into",
    "through",
    "during",
    "before",
    "after",
    "above",
    "below",
    "to",
    "from",
    "up",
    "down",
    "in",
    "out",
    "on",
    "off",
    "over",
    "under",
    "again",
    "further",
    "then",
    "once",
    "here",
    "there",
    "when",
    "where",
    "why",
    "how",
    "all",
    "any",
    "both",
    "each",
    "few",
    "more",
    "most",
    "other",
    "some",
    "such",
    "no",
    "nor",
    "not",
    "only",
    "own",
    "same",
    "so",
    "than",
    "too",
    "very",
    "s",
    "t",
    "can",
    "will",
    "just",
    "don",
    "don't",
    "should",
    "should've",
    "now",
    "d",
    "ll",
    "m",
    "o",
    "re",
    "ve",
    "y",
    "ain",
    "aren",
    "aren't",
    "couldn",
    "couldn't",
    "didn",
    "didn't",
    "doesn",
    "doesn't",
    "hadn",
    "hadn't",
    "hasn",
    "hasn't",
    "haven",
    "haven't",
    "isn",
    "isn't",
    "ma",
    "mightn",
    "mightn't",
    "mustn",
    "mustn't",
    "needn",
    "needn't",
    "shan",
    "shan't",
    "shouldn",
    "shouldn't",
    "wasn",
    "wasn't",
    "weren",
    "weren't",
    "won",
    "won't",
    "wouldn",
    "wouldn't",
];

/// Field weights of the BM25 query. Chosen on scifact train and our own manuals, never a test split
/// (see ARCHITECTURE.md, "Retrieval settings").
#[derive(Debug, Clone, Copy)]
pub struct LexicalWeights {
    pub title: f32,
    pub identifiers: f32,
}

impl Default for LexicalWeights {
    fn default() -> Self {
        Self {
            title: 0.5,
            identifiers: 2.0,
        }
    }
}

/// One language's searchable fields.
#[derive(Clone, Copy)]
struct LanguageFields {
    text: Field,
    /// Manual title and heading path.
    title: Field,
    /// Identifiers, exact (error codes, part and model numbers).
    ids: Field,
}

#[derive(Clone, Copy)]
struct Fields {
    ord: Field,
    english: LanguageFields,
    spanish: LanguageFields,
    /// `Analysis::code` of the chunk: counts each language's chunks for its statistics.
    analysis: Field,
    manual: Field,
    model: Field,
    audience: Field,
    language: Field,
    owner: Field,
}

impl Fields {
    fn of(&self, analysis: Analysis) -> LanguageFields {
        match analysis {
            Analysis::English => self.english,
            Analysis::Spanish => self.spanish,
        }
    }
}

fn schema() -> (Schema, Fields) {
    let mut b = Schema::builder();
    let stemmed = |analysis: Analysis| {
        TextOptions::default().set_indexing_options(
            TextFieldIndexing::default()
                .set_tokenizer(analysis.tokenizer_name())
                .set_index_option(IndexRecordOption::WithFreqs),
        )
    };
    let exact = TextOptions::default().set_indexing_options(
        TextFieldIndexing::default()
            .set_tokenizer("raw")
            .set_index_option(IndexRecordOption::WithFreqs),
    );
    let ord = b.add_u64_field("ord", FAST | STORED);
    // English keeps the field names it had before languages were told apart.
    let english = LanguageFields {
        text: b.add_text_field("text", stemmed(Analysis::English)),
        title: b.add_text_field("title", stemmed(Analysis::English)),
        ids: b.add_text_field("ids", exact.clone()),
    };
    let spanish = LanguageFields {
        text: b.add_text_field("text_es", stemmed(Analysis::Spanish)),
        title: b.add_text_field("title_es", stemmed(Analysis::Spanish)),
        ids: b.add_text_field("ids_es", exact),
    };
    let fields = Fields {
        ord,
        english,
        spanish,
        analysis: b.add_text_field("analysis", STRING),
        manual: b.add_text_field("manual", STRING),
        model: b.add_text_field("model", STRING),
        audience: b.add_text_field("audience", STRING),
        language: b.add_text_field("language", STRING),
        owner: b.add_text_field("owner", STRING),
    };
    (b.build(), fields)
}

fn register(index: &Index) {
    for analysis in Analysis::ALL {
        index
            .tokenizers()
            .register(analysis.tokenizer_name(), analysis.analyzer());
    }
}

/// Writes the BM25 index of `chunks` into `dir` (which must be empty); chunk `i` gets ord `i`.
pub fn build_lexical(dir: &Path, chunks: &[Chunk]) -> Result<()> {
    build_lexical_from(dir, chunks.iter())
}

/// `build_lexical` over chunks made one at a time (the scale benchmark's million synthetic ones
/// need not all be in memory).
pub fn build_lexical_from<C: std::borrow::Borrow<Chunk>>(
    dir: &Path,
    chunks: impl Iterator<Item = C>,
) -> Result<()> {
    let (schema, f) = schema();
    let index = Index::create_in_dir(dir, schema)?;
    register(&index);
    let mut writer = index.writer_with_num_threads(1, 64 << 20)?;
    for (ord, chunk) in chunks.enumerate() {
        let chunk = chunk.borrow();
        let analysis = Analysis::of(&chunk.language);
        let own = f.of(analysis);
        let mut doc = TantivyDocument::default();
        doc.add_u64(f.ord, ord as u64);
        doc.add_text(own.text, chunk.text.as_str());
        let mut title = chunk.manual_title.clone();
        for h in &chunk.heading_path {
            title.push_str(" \n ");
            title.push_str(h);
        }
        doc.add_text(own.title, &title);
        for id in identifiers(&format!("{title}\n{}", chunk.text)) {
            doc.add_text(own.ids, &id);
        }
        doc.add_text(f.analysis, analysis.code());
        doc.add_text(f.manual, &chunk.manual_id);
        if chunk.models.is_empty() {
            doc.add_text(f.model, GENERAL_MODEL);
        }
        for m in &chunk.models {
            doc.add_text(f.model, m);
        }
        for a in &chunk.audiences {
            doc.add_text(f.audience, a);
        }
        doc.add_text(f.language, &chunk.language);
        doc.add_text(f.owner, chunk.owner.as_deref().unwrap_or(PUBLIC_OWNER));
        writer.add_document(doc)?;
    }
    writer.commit()?;
    writer.wait_merging_threads()?;
    Ok(())
}

/// BM25 statistics of one language's public chunks: the searcher's counts less the private
/// documents' share, with the number of documents being that language's. (Its fields hold only its
/// own chunks' tokens and terms already.)
struct LanguageStatistics<'a> {
    searcher: &'a Searcher,
    docs: u64,
    /// What to leave out; `None` counts everything.
    private: Option<&'a PrivateDocs>,
}

impl Bm25StatisticsProvider for LanguageStatistics<'_> {
    fn total_num_tokens(&self, field: Field) -> tantivy::Result<u64> {
        let all = Bm25StatisticsProvider::total_num_tokens(self.searcher, field)?;
        let public = all.saturating_sub(self.private.map_or(0, |p| p.tokens(field)));
        // A field only patients' documents fill (identifiers, say) would have an average length
        // of 0, and tantivy's length normalisation would then score every match 0.
        Ok(if public > 0 { public } else { all })
    }

    fn total_num_docs(&self) -> tantivy::Result<u64> {
        Ok(self.docs)
    }

    fn doc_freq(&self, term: &Term) -> tantivy::Result<u64> {
        let all = self.searcher.doc_freq(term)?;
        Ok(all.saturating_sub(self.private.map_or(0, |p| p.doc_freq(term))))
    }
}

/// A weighted piece of query text: the current question at weight 1, earlier turns lower.
#[derive(Debug, Clone)]
pub struct WeightedText<'a> {
    pub text: &'a str,
    pub weight: f32,
}

pub struct LexicalIndex {
    /// Built once per language: constructing one builds its stop-word set, which a query should not
    /// pay for.
    english: TextAnalyzer,
    spanish: TextAnalyzer,
    reader: IndexReader,
    fields: Fields,
    weights: LexicalWeights,
    /// Chunks analysed by each language's rules, in `Analysis::ALL` order.
    docs: [u64; Analysis::ALL.len()],
    /// The public ones among them: what BM25's statistics count.
    public_docs: [u64; Analysis::ALL.len()],
    /// Patients' documents, left out of every statistic (`None` when there are none).
    private: Option<PrivateDocs>,
}

impl LexicalIndex {
    pub fn open(dir: &Path, weights: LexicalWeights) -> Result<Self> {
        let index = Index::open_in_dir(dir)?;
        register(&index);
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()?;
        let (_, fields) = schema();
        let searcher = reader.searcher();
        let scored: Vec<Field> = Analysis::ALL
            .iter()
            .flat_map(|&a| {
                let f = fields.of(a);
                [f.text, f.title, f.ids]
            })
            .chain([fields.analysis])
            .collect();
        let private = PrivateDocs::find(&searcher, fields.owner, PUBLIC_OWNER, &scored)?;
        let (mut docs, mut public_docs) = ([0; Analysis::ALL.len()], [0; Analysis::ALL.len()]);
        for (i, analysis) in Analysis::ALL.into_iter().enumerate() {
            let term = Term::from_field_text(fields.analysis, analysis.code());
            docs[i] = searcher.doc_freq(&term)?;
            public_docs[i] =
                docs[i].saturating_sub(private.as_ref().map_or(0, |p| p.doc_freq(&term)));
        }
        Ok(Self {
            english: Analysis::English.analyzer(),
            spanish: Analysis::Spanish.analyzer(),
            reader,
            fields,
            weights,
            docs,
            public_docs,
            private,
        })
    }

    /// Changes the field weights; they only shape queries, so the index need not be reopened.
    pub fn set_weights(&mut self, weights: LexicalWeights) {
        self.weights = weights;
    }

    pub fn num_docs(&self) -> u64 {
        self.reader.searcher().num_docs()
    }

    /// How many chunks `analysis`'s rules indexed.
    pub fn docs_in(&self, analysis: Analysis) -> u64 {
        self.docs[analysis as usize]
    }

    /// The statistics `analysis`'s searches are scored by: its public chunks', or, for a language
    /// only patients' documents are written in, all of its chunks (nothing public to count).
    fn statistics<'a>(
        &'a self,
        searcher: &'a Searcher,
        analysis: Analysis,
    ) -> LanguageStatistics<'a> {
        let public = self.public_docs[analysis as usize];
        LanguageStatistics {
            searcher,
            docs: if public > 0 {
                public
            } else {
                self.docs_in(analysis)
            },
            private: self.private.as_ref().filter(|_| public > 0),
        }
    }

    /// How much a matched term (analysed by `analysis`) says: BM25's idf among that language's
    /// public chunks, ln(1 + (N - df + 0.5) / (df + 0.5)).
    pub fn term_weight(&self, term: &str, analysis: Analysis) -> f32 {
        let searcher = self.reader.searcher();
        let statistics = self.statistics(&searcher, analysis);
        let n = statistics.docs as f32;
        let df = statistics
            .doc_freq(&Term::from_field_text(self.fields.of(analysis).text, term))
            .unwrap_or(0) as f32;
        (1.0 + (n - df + 0.5) / (df + 0.5)).ln()
    }

    /// Stemmed terms of `text` as `analysis`'s rules see them (stop words removed, duplicates
    /// kept).
    pub fn analyse(&self, text: &str, analysis: Analysis) -> Vec<String> {
        let mut analyzer = match analysis {
            Analysis::English => self.english.clone(),
            Analysis::Spanish => self.spanish.clone(),
        };
        let mut stream = analyzer.token_stream(text);
        let mut out = Vec::new();
        stream.process(&mut |t| out.push(t.text.clone()));
        out
    }

    /// Top `limit` chunks by BM25 as (ord, score), best first, with `filters` inside the query.
    /// The query is analysed by the rules of every language the index holds, each searching its
    /// own chunks with its own statistics; the lists merge by score.
    pub fn search(
        &self,
        parts: &[WeightedText<'_>],
        filters: &Filters,
        limit: usize,
    ) -> Result<Vec<(u32, f32)>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let searcher = self.reader.searcher();
        let mut out = Vec::new();
        for analysis in Analysis::ALL {
            if self.docs_in(analysis) == 0 {
                continue;
            }
            let Some(query) = self.query(parts, filters, analysis) else {
                continue;
            };
            let statistics = self.statistics(&searcher, analysis);
            let top = searcher.search_with_statistics_provider(
                &query,
                &TopDocs::with_limit(limit).order_by_score(),
                &statistics,
            )?;
            for (score, address) in top {
                let ords = searcher
                    .segment_reader(address.segment_ord)
                    .fast_fields()
                    .u64("ord")?;
                if let Some(ord) = ords.first(address.doc_id) {
                    out.push((ord as u32, score));
                }
            }
        }
        // Stable, so one language's list keeps tantivy's order among equal scores.
        out.sort_by(|a, b| b.1.total_cmp(&a.1));
        out.truncate(limit);
        Ok(out)
    }

    /// The BM25 query of `parts` over `analysis`'s fields, with `filters` inside; `None` when no
    /// term or identifier is left to search.
    fn query(
        &self,
        parts: &[WeightedText<'_>],
        filters: &Filters,
        analysis: Analysis,
    ) -> Option<BooleanQuery> {
        let f = self.fields.of(analysis);
        let mut should: Vec<(Occur, Box<dyn Query>)> = Vec::new();
        let mut seen = HashSet::new();
        for part in parts {
            for term in self.analyse(part.text, analysis) {
                if !seen.insert((term.clone(), part.weight.to_bits())) {
                    continue;
                }
                let text_q = TermQuery::new(
                    Term::from_field_text(f.text, &term),
                    IndexRecordOption::WithFreqs,
                );
                let title_q = TermQuery::new(
                    Term::from_field_text(f.title, &term),
                    IndexRecordOption::WithFreqs,
                );
                should.push((Occur::Should, boosted(Box::new(text_q), part.weight)));
                should.push((
                    Occur::Should,
                    boosted(Box::new(title_q), part.weight * self.weights.title),
                ));
            }
            for id in identifiers(part.text) {
                if !seen.insert((format!("#id:{id}"), part.weight.to_bits())) {
                    continue;
                }
                let q = TermQuery::new(
                    Term::from_field_text(f.ids, &id),
                    IndexRecordOption::WithFreqs,
                );
                should.push((
                    Occur::Should,
                    boosted(Box::new(q), part.weight * self.weights.identifiers),
                ));
            }
        }
        if should.is_empty() {
            return None;
        }
        let mut clauses: Vec<(Occur, Box<dyn Query>)> =
            vec![(Occur::Must, Box::new(BooleanQuery::new(should)))];
        for filter in self.filter_clauses(filters) {
            // A zero-score Must clause restricts the matches without changing BM25 scores.
            clauses.push((Occur::Must, Box::new(ConstScoreQuery::new(filter, 0.0))));
        }
        Some(BooleanQuery::new(clauses))
    }

    fn filter_clauses(&self, filters: &Filters) -> Vec<Box<dyn Query>> {
        let f = self.fields;
        let mut out = Vec::new();
        let mut one_of = |field: Field, values: Vec<&str>| {
            let terms: Vec<(Occur, Box<dyn Query>)> = values
                .into_iter()
                .map(|v| {
                    let q: Box<dyn Query> = Box::new(TermQuery::new(
                        Term::from_field_text(field, v),
                        IndexRecordOption::Basic,
                    ));
                    (Occur::Should, q)
                })
                .collect();
            out.push(Box::new(BooleanQuery::new(terms)) as Box<dyn Query>);
        };
        if !filters.manuals.is_empty() {
            one_of(
                f.manual,
                filters.manuals.iter().map(String::as_str).collect(),
            );
        }
        if !filters.models.is_empty() {
            let mut values: Vec<&str> = filters.models.iter().map(String::as_str).collect();
            if filters.include_general {
                values.push(GENERAL_MODEL);
            }
            one_of(f.model, values);
        }
        if !filters.audiences.is_empty() {
            one_of(
                f.audience,
                filters.audiences.iter().map(String::as_str).collect(),
            );
        }
        if !filters.languages.is_empty() {
            one_of(
                f.language,
                filters.languages.iter().map(String::as_str).collect(),
            );
        }
        match &filters.owner {
            OwnerScope::Everything => {}
            OwnerScope::Public => one_of(f.owner, vec![PUBLIC_OWNER]),
            OwnerScope::PublicAnd(owner) => one_of(f.owner, vec![PUBLIC_OWNER, owner.as_str()]),
        }
        out
    }
}

fn boosted(q: Box<dyn Query>, weight: f32) -> Box<dyn Query> {
    if (weight - 1.0).abs() < f32::EPSILON {
        q
    } else {
        Box::new(BoostQuery::new(q, weight))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(language: &str, heading: &str, text: &str) -> Chunk {
        Chunk {
            chunk_id: format!("{language}-{heading}"),
            manual_id: format!("manual-{language}"),
            manual_title: "Pump".to_string(),
            revision: "1".to_string(),
            language: language.to_string(),
            models: Vec::new(),
            audiences: Vec::new(),
            owner: None,
            heading_path: vec![heading.to_string()],
            anchor: String::new(),
            line: 1,
            text: text.to_string(),
        }
    }

    fn index_of(chunks: &[Chunk]) -> (LexicalIndex, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        build_lexical(dir.path(), chunks).unwrap();
        let index = LexicalIndex::open(dir.path(), LexicalWeights::default()).unwrap();
        (index, dir)
    }

    fn search(index: &LexicalIndex, query: &str) -> Vec<(u32, f32)> {
        let filters = Filters {
            owner: OwnerScope::Everything,
            ..Filters::default()
        };
        let parts = [WeightedText {
            text: query,
            weight: 1.0,
        }];
        index.search(&parts, &filters, 10).unwrap()
    }

    fn english() -> Vec<Chunk> {
        vec![
            chunk("en", "Battery", "Replace the battery pack every two years."),
            chunk("en", "Cleaning", "Wipe the housing with a damp cloth."),
            chunk("en", "Faults", "E-204 means a downstream occlusion."),
        ]
    }

    fn spanish() -> Vec<Chunk> {
        vec![
            chunk(
                "es",
                "Batería",
                "Cambie la batería cuando la pantalla muestre BATERÍA BAJA.",
            ),
            chunk("es", "Limpieza", "Limpie la carcasa con un paño húmedo."),
            chunk("es-MX", "Fallas", "E-204 indica una oclusión aguas abajo."),
        ]
    }

    #[test]
    fn spanish_is_read_by_spanish_rules_whatever_the_accents_and_inflection() {
        let (index, _dir) = index_of(&spanish());
        let typed = index.analyse("como cambio la bateria", Analysis::Spanish);
        let accented = index.analyse("¿Cómo cambio las baterías?", Analysis::Spanish);
        assert_eq!(typed, accented);
        // "cómo", "la", "las" are stop words; what is left is the verb and the noun.
        assert_eq!(typed.len(), 2, "{typed:?}");
        for stop_word in [
            "qué", "que", "cuánto", "cuanto", "está", "esta", "más", "mas",
        ] {
            assert!(
                index.analyse(stop_word, Analysis::Spanish).is_empty(),
                "{stop_word}"
            );
        }
        // Typed on a phone, plural and without accents, it still finds the singular, accented text.
        let hits = search(&index, "baterias");
        assert_eq!(hits.first().map(|h| h.0), Some(0), "{hits:?}");
        assert_eq!(hits.len(), 1);
    }

    #[test]
    fn the_languages_lists_merge_by_score_and_keep_the_limit() {
        let mut chunks = english();
        chunks.extend(spanish());
        let (index, _dir) = index_of(&chunks);
        let filters = Filters {
            owner: OwnerScope::Everything,
            ..Filters::default()
        };
        let parts = [WeightedText {
            text: "E-204",
            weight: 1.0,
        }];
        let all = index.search(&parts, &filters, 10).unwrap();
        assert_eq!(all.len(), 2, "{all:?}");
        assert!(all[0].1 >= all[1].1, "{all:?}");
        let one = index.search(&parts, &filters, 1).unwrap();
        assert_eq!(one, all[..1].to_vec());
        assert!(index.search(&parts, &filters, 0).unwrap().is_empty());
    }

    #[test]
    fn patients_documents_move_no_score_and_no_weight_the_public_sees() {
        let mut public = english();
        public.extend(spanish());
        let mut with_notes = public.clone();
        // Patients' notes sharing the public chunks' words, and adding a rare one.
        for (owner, language, text) in [
            (
                "packet-1",
                "en",
                "Take warfarin daily. Replace the dressing; the pump battery lasts a day. E-204",
            ),
            ("packet-1", "en", "Warfarin: no aspirin."),
            (
                "packet-2",
                "es",
                "Tome warfarina. Cambie la batería de la bomba cada día.",
            ),
        ] {
            let mut note = chunk(language, "Your care", text);
            note.chunk_id = format!("{owner}-{}", with_notes.len());
            note.owner = Some(owner.to_string());
            with_notes.push(note);
        }
        let (alone, _a) = index_of(&public);
        let (both, _b) = index_of(&with_notes);
        let scoped = |owner: OwnerScope| Filters {
            owner,
            ..Filters::default()
        };
        for query in [
            "replace the battery",
            "E-204 occlusion",
            "cambie la batería",
            "damp cloth warfarin",
        ] {
            let parts = [WeightedText {
                text: query,
                weight: 1.0,
            }];
            let a = alone
                .search(&parts, &scoped(OwnerScope::Public), 10)
                .unwrap();
            let b = both
                .search(&parts, &scoped(OwnerScope::Public), 10)
                .unwrap();
            assert!(!a.is_empty(), "{query}");
            assert_eq!(a.len(), b.len(), "{query}: {a:?} {b:?}");
            for (x, y) in a.iter().zip(&b) {
                assert_eq!(x.0, y.0, "{query}: {a:?} {b:?}");
                assert!((x.1 - y.1).abs() < 1e-6, "{query}: {a:?} {b:?}");
            }
        }
        for (term, analysis) in [
            ("batteri", Analysis::English),
            ("warfarin", Analysis::English),
            ("bateri", Analysis::Spanish),
        ] {
            let (a, b) = (
                alone.term_weight(term, analysis),
                both.term_weight(term, analysis),
            );
            assert!((a - b).abs() < 1e-6, "{term}: {a} against {b}");
        }
        // The notes' owner still finds them, scored by the same public statistics.
        let parts = [WeightedText {
            text: "warfarin battery",
            weight: 1.0,
        }];
        let mine = both
            .search(
                &parts,
                &scoped(OwnerScope::PublicAnd("packet-1".into())),
                10,
            )
            .unwrap();
        let ords: Vec<u32> = mine.iter().map(|h| h.0).collect();
        assert!(ords[..2].contains(&6) && ords[..2].contains(&7), "{mine:?}");
        assert!(
            mine.iter().all(|h| h.0 != 8),
            "another patient's note: {mine:?}"
        );
    }

    #[test]
    fn a_language_scores_as_if_the_others_were_not_in_the_index() {
        let (alone, _a) = index_of(&english());
        let mut both_chunks = english();
        both_chunks.extend(spanish());
        let (both, _b) = index_of(&both_chunks);
        assert_eq!(both.docs_in(Analysis::English), 3);
        assert_eq!(both.docs_in(Analysis::Spanish), 3);
        for query in [
            "replace the battery",
            "damp cloth housing",
            "E-204 occlusion",
        ] {
            let (a, b) = (search(&alone, query), search(&both, query));
            let english_only: Vec<(u32, f32)> = b.iter().copied().filter(|h| h.0 < 3).collect();
            assert_eq!(a.len(), english_only.len(), "{query}: {a:?} {b:?}");
            for (x, y) in a.iter().zip(&english_only) {
                assert_eq!(x.0, y.0, "{query}");
                assert!((x.1 - y.1).abs() < 1e-5, "{query}: {a:?} {b:?}");
            }
            let word = alone.analyse(query, Analysis::English)[0].clone();
            assert_eq!(
                alone.term_weight(&word, Analysis::English),
                both.term_weight(&word, Analysis::English)
            );
        }
        // An identifier is found in both languages' chunks; each language's idf counts its own.
        let hits = search(&both, "E-204");
        let mut ords: Vec<u32> = hits.iter().map(|h| h.0).collect();
        ords.sort();
        assert_eq!(ords, vec![2, 5]);
        let bateri = both.analyse("batería", Analysis::Spanish)[0].clone();
        let idf = (1.0f32 + (3.0 - 1.0 + 0.5) / (1.0 + 0.5)).ln();
        assert!((both.term_weight(&bateri, Analysis::Spanish) - idf).abs() < 1e-6);
        // Nothing English is stemmed the Spanish way, and the other way round.
        let spanish_hits = search(&both, "limpie carcasa");
        assert_eq!(
            spanish_hits.first().map(|h| h.0),
            Some(4),
            "{spanish_hits:?}"
        );
        assert!(spanish_hits.iter().all(|h| h.0 >= 3), "{spanish_hits:?}");
        let english_hits = search(&both, "wipe housing");
        assert_eq!(
            english_hits.first().map(|h| h.0),
            Some(1),
            "{english_hits:?}"
        );
        assert!(english_hits.iter().all(|h| h.0 < 3), "{english_hits:?}");
    }
}
