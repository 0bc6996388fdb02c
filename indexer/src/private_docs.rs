//! Which documents of a tantivy index are private (a patient's packet), and how much of the
//! index's BM25 statistics they make up, so the statistics can leave them out.
//!
//! BM25 scores a public chunk by statistics of the whole collection: how many documents hold a
//! term, how many there are, their average length. With patients' documents counted in, a score
//! anybody sees (and the confidence built on it) would move when a patient's note mentions a drug,
//! which is what someone watching the public chat could learn. Subtracting these counts gives the
//! statistics of the public documents alone, exactly.

use std::collections::HashMap;

use tantivy::postings::Postings;
use tantivy::schema::{Field, IndexRecordOption};
use tantivy::{DocSet, Searcher, Term, TERMINATED};

use tantivy::Result;

/// The private documents of one searcher's segments, counted once when the index opens.
pub struct PrivateDocs {
    /// Tokens the private documents hold, per counted field (what `total_num_tokens` sums).
    tokens: HashMap<Field, u64>,
    /// How many private documents hold each term of the counted fields (terms none holds are
    /// absent), so a search looks its terms up instead of walking their postings.
    doc_freqs: HashMap<(Field, Vec<u8>), u64>,
}

impl PrivateDocs {
    /// The documents whose `owner` holds any value but `public`, with their token counts and term
    /// document counts in `counted` (the fields BM25 scores and counts); `None` when every
    /// document is public.
    pub fn find(
        searcher: &Searcher,
        owner: Field,
        public: &str,
        counted: &[Field],
    ) -> Result<Option<Self>> {
        let mut private = Vec::with_capacity(searcher.segment_readers().len());
        let mut any = false;
        for segment in searcher.segment_readers() {
            let mut marks = vec![false; segment.max_doc() as usize];
            let mut marked = false;
            let owners = segment.inverted_index(owner)?;
            let mut stream = owners.terms().stream()?;
            while stream.advance() {
                if stream.key() == public.as_bytes() {
                    continue;
                }
                let mut postings =
                    owners.read_postings_from_terminfo(stream.value(), IndexRecordOption::Basic)?;
                while postings.doc() != TERMINATED {
                    marks[postings.doc() as usize] = true;
                    marked = true;
                    postings.advance();
                }
            }
            any |= marked;
            private.push(marked.then_some(marks));
        }
        if !any {
            return Ok(None);
        }
        let mut docs = Self {
            tokens: HashMap::new(),
            doc_freqs: HashMap::new(),
        };
        for &field in counted {
            docs.count(searcher, &private, field)?;
        }
        Ok(Some(docs))
    }

    /// Every occurrence of every term of `field` in a private document, and how many private
    /// documents hold each term: walks the field's whole term dictionary once.
    fn count(
        &mut self,
        searcher: &Searcher,
        private: &[Option<Vec<bool>>],
        field: Field,
    ) -> Result<()> {
        let mut tokens = 0;
        for (segment, marks) in searcher.segment_readers().iter().zip(private) {
            let Some(marks) = marks else { continue };
            let inverted = segment.inverted_index(field)?;
            let mut stream = inverted.terms().stream()?;
            while stream.advance() {
                let mut postings = inverted
                    .read_postings_from_terminfo(stream.value(), IndexRecordOption::WithFreqs)?;
                let mut holding = 0;
                while postings.doc() != TERMINATED {
                    if marks[postings.doc() as usize] {
                        tokens += u64::from(postings.term_freq());
                        holding += 1;
                    }
                    postings.advance();
                }
                if holding > 0 {
                    *self
                        .doc_freqs
                        .entry((field, stream.key().to_vec()))
                        .or_default() += holding;
                }
            }
        }
        self.tokens.insert(field, tokens);
        Ok(())
    }

    /// How many private documents hold `term` (counted as tantivy's `doc_freq` counts; 0 for a
    /// field not counted).
    pub fn doc_freq(&self, term: &Term) -> u64 {
        self.doc_freqs
            .get(&(term.field(), term.serialized_value_bytes().to_vec()))
            .copied()
            .unwrap_or(0)
    }

    /// Tokens the private documents hold in `field` (0 for a field not counted).
    pub fn tokens(&self, field: Field) -> u64 {
        self.tokens.get(&field).copied().unwrap_or(0)
    }
}
