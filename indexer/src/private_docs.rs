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

/// The private documents of one searcher's segments.
pub struct PrivateDocs {
    /// Per segment, in the searcher's order: whether each document id is private (`None` for a
    /// segment with none).
    private: Vec<Option<Vec<bool>>>,
    /// Tokens the private documents hold, per counted field (what `total_num_tokens` sums).
    tokens: HashMap<Field, u64>,
}

impl PrivateDocs {
    /// The documents whose `owner` holds any value but `public`, with their token counts in
    /// `counted` (the fields BM25 scores); `None` when every document is public.
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
            private,
            tokens: HashMap::new(),
        };
        for &field in counted {
            let tokens = docs.count_tokens(searcher, field)?;
            docs.tokens.insert(field, tokens);
        }
        Ok(Some(docs))
    }

    /// Every occurrence of every term of `field` in a private document: walks the field's whole
    /// term dictionary once, when the index is opened.
    fn count_tokens(&self, searcher: &Searcher, field: Field) -> Result<u64> {
        let mut total = 0;
        for (segment, marks) in searcher.segment_readers().iter().zip(&self.private) {
            let Some(marks) = marks else { continue };
            let inverted = segment.inverted_index(field)?;
            let mut stream = inverted.terms().stream()?;
            while stream.advance() {
                let mut postings = inverted
                    .read_postings_from_terminfo(stream.value(), IndexRecordOption::WithFreqs)?;
                while postings.doc() != TERMINATED {
                    if marks[postings.doc() as usize] {
                        total += u64::from(postings.term_freq());
                    }
                    postings.advance();
                }
            }
        }
        Ok(total)
    }

    /// How many private documents hold `term` (counted as tantivy's `doc_freq` counts).
    pub fn doc_freq(&self, searcher: &Searcher, term: &Term) -> Result<u64> {
        let mut n = 0;
        for (segment, marks) in searcher.segment_readers().iter().zip(&self.private) {
            let Some(marks) = marks else { continue };
            let inverted = segment.inverted_index(term.field())?;
            let postings = inverted.read_postings(term, IndexRecordOption::Basic)?;
            let Some(mut postings) = postings else {
                continue;
            };
            while postings.doc() != TERMINATED {
                n += u64::from(marks[postings.doc() as usize]);
                postings.advance();
            }
        }
        Ok(n)
    }

    /// Tokens the private documents hold in `field` (0 for a field not counted).
    pub fn tokens(&self, field: Field) -> u64 {
        self.tokens.get(&field).copied().unwrap_or(0)
    }
}
