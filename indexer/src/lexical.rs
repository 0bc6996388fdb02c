//! The BM25 leg: a tantivy index of the chunks. Stemmed English text with stop words removed, the
//! manual title and heading path in a field of their own (weighted), an exact field for identifiers
//! (error codes, part and model numbers), and raw metadata fields that filters match inside the query.

use std::collections::HashSet;
use std::path::Path;

use tantivy::collector::TopDocs;
use tantivy::query::{BooleanQuery, BoostQuery, ConstScoreQuery, Occur, Query, TermQuery};
use tantivy::schema::{
    Field, IndexRecordOption, Schema, TextFieldIndexing, TextOptions, FAST, STORED, STRING,
};
use tantivy::tokenizer::{
    Language, LowerCaser, RemoveLongFilter, SimpleTokenizer, Stemmer, StopWordFilter, TextAnalyzer,
};
use tantivy::{Index, IndexReader, ReloadPolicy, TantivyDocument, Term};

use crate::chunking::Chunk;
use crate::error::Result;
use crate::filters::{Filters, OwnerScope, GENERAL_MODEL, PUBLIC_OWNER};
use crate::identifiers::identifiers;

const ANALYZER: &str = "scanaid_en";
/// Names the analysis chain; stored in each generation's meta and checked on open, so an index is
/// never searched with a different analyzer than it was built with.
pub const ANALYZER_VERSION: &str = "en-simple-lower-stop179-porter2";

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

#[derive(Clone, Copy)]
struct Fields {
    ord: Field,
    text: Field,
    title: Field,
    ids: Field,
    manual: Field,
    model: Field,
    audience: Field,
    language: Field,
    owner: Field,
}

fn schema() -> (Schema, Fields) {
    let mut b = Schema::builder();
    let stemmed = TextOptions::default().set_indexing_options(
        TextFieldIndexing::default()
            .set_tokenizer(ANALYZER)
            .set_index_option(IndexRecordOption::WithFreqs),
    );
    let exact = TextOptions::default().set_indexing_options(
        TextFieldIndexing::default()
            .set_tokenizer("raw")
            .set_index_option(IndexRecordOption::WithFreqs),
    );
    let fields = Fields {
        ord: b.add_u64_field("ord", FAST | STORED),
        text: b.add_text_field("text", stemmed.clone()),
        title: b.add_text_field("title", stemmed),
        ids: b.add_text_field("ids", exact),
        manual: b.add_text_field("manual", STRING),
        model: b.add_text_field("model", STRING),
        audience: b.add_text_field("audience", STRING),
        language: b.add_text_field("language", STRING),
        owner: b.add_text_field("owner", STRING),
    };
    (b.build(), fields)
}

fn analyzer() -> TextAnalyzer {
    TextAnalyzer::builder(SimpleTokenizer::default())
        .filter(RemoveLongFilter::limit(40))
        .filter(LowerCaser)
        .filter(StopWordFilter::remove(
            STOP_WORDS.iter().map(|w| w.to_string()),
        ))
        .filter(Stemmer::new(Language::English))
        .build()
}

fn register(index: &Index) {
    index.tokenizers().register(ANALYZER, analyzer());
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
        let mut doc = TantivyDocument::default();
        doc.add_u64(f.ord, ord as u64);
        doc.add_text(f.text, chunk.text.as_str());
        let mut title = chunk.manual_title.clone();
        for h in &chunk.heading_path {
            title.push_str(" \n ");
            title.push_str(h);
        }
        doc.add_text(f.title, &title);
        for id in identifiers(&format!("{title}\n{}", chunk.text)) {
            doc.add_text(f.ids, &id);
        }
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

/// A weighted piece of query text: the current question at weight 1, earlier turns lower.
#[derive(Debug, Clone)]
pub struct WeightedText<'a> {
    pub text: &'a str,
    pub weight: f32,
}

pub struct LexicalIndex {
    /// Built once: constructing it builds the stop-word set, which a query should not pay for.
    analyzer: TextAnalyzer,
    reader: IndexReader,
    fields: Fields,
    weights: LexicalWeights,
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
        Ok(Self {
            analyzer: analyzer(),
            reader,
            fields,
            weights,
        })
    }

    /// Changes the field weights; they only shape queries, so the index need not be reopened.
    pub fn set_weights(&mut self, weights: LexicalWeights) {
        self.weights = weights;
    }

    pub fn num_docs(&self) -> u64 {
        self.reader.searcher().num_docs()
    }

    /// How much a matched (analysed) term says: BM25's idf, ln(1 + (N - df + 0.5) / (df + 0.5)).
    pub fn term_weight(&self, term: &str) -> f32 {
        let searcher = self.reader.searcher();
        let n = searcher.num_docs() as f32;
        let df = searcher
            .doc_freq(&Term::from_field_text(self.fields.text, term))
            .unwrap_or(0) as f32;
        (1.0 + (n - df + 0.5) / (df + 0.5)).ln()
    }

    /// Stemmed terms of `text` as the index sees them (stop words removed, duplicates kept).
    pub fn analyse(&self, text: &str) -> Vec<String> {
        let mut analyzer = self.analyzer.clone();
        let mut stream = analyzer.token_stream(text);
        let mut out = Vec::new();
        stream.process(&mut |t| out.push(t.text.clone()));
        out
    }

    /// Top `limit` chunks by BM25 as (ord, score), best first, with `filters` inside the query.
    pub fn search(
        &self,
        parts: &[WeightedText<'_>],
        filters: &Filters,
        limit: usize,
    ) -> Result<Vec<(u32, f32)>> {
        let f = self.fields;
        let mut should: Vec<(Occur, Box<dyn Query>)> = Vec::new();
        let mut seen = HashSet::new();
        for part in parts {
            for term in self.analyse(part.text) {
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
        if should.is_empty() || limit == 0 {
            return Ok(Vec::new());
        }
        let mut clauses: Vec<(Occur, Box<dyn Query>)> =
            vec![(Occur::Must, Box::new(BooleanQuery::new(should)))];
        for filter in self.filter_clauses(filters) {
            // A zero-score Must clause restricts the matches without changing BM25 scores.
            clauses.push((Occur::Must, Box::new(ConstScoreQuery::new(filter, 0.0))));
        }
        let query = BooleanQuery::new(clauses);
        let searcher = self.reader.searcher();
        let top = searcher.search(&query, &TopDocs::with_limit(limit).order_by_score())?;
        let mut out = Vec::with_capacity(top.len());
        for (score, address) in top {
            let ords = searcher
                .segment_reader(address.segment_ord)
                .fast_fields()
                .u64("ord")?;
            if let Some(ord) = ords.first(address.doc_id) {
                out.push((ord as u32, score));
            }
        }
        Ok(out)
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
