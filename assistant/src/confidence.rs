//! Confidence as a logistic model over the evidence: P(the manuals answer this | evidence). Features
//! are standardised with the training set's mean and spread, weights are fitted by full-batch gradient
//! descent on the log-loss with a small L2 penalty. A logistic model's output is a probability by
//! construction, so a well-fitted one is calibrated; `scanaid eval answerability` checks that (ECE)
//! on questions it was not fitted on.

use crate::evidence::N_FEATURES;

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Logistic {
    pub mean: [f64; N_FEATURES],
    pub scale: [f64; N_FEATURES],
    pub weights: [f64; N_FEATURES],
    pub bias: f64,
}

/// Fitting settings; the defaults are what the product uses.
#[derive(Debug, Clone, Copy)]
pub struct FitOptions {
    /// L2 penalty on the (standardised) weights, per example.
    pub l2: f64,
    pub iterations: usize,
    pub learning_rate: f64,
    /// Which features take part (the others get weight 0): for ablations.
    pub use_feature: [bool; N_FEATURES],
}

/// The default features of `scanaid eval answerability` (`--features product`): both legs' best
/// scores and how far each stands above the runner-up. On mtrag-dev this set cross-validates best
/// (AUROC 0.905, ECE 0.045; all eight: 0.893, 0.076); it was picked by looking at those figures, so
/// they are slightly optimistic for it. The shipped model (`ShippedModel::bundled`) names its own
/// features: it is fitted on the bundled manuals' questions with all eight (README, "Answer or
/// escalate"), because a model fitted on mtrag-dev marked 83% of our answerable manual questions
/// unsure.
pub const PRODUCT_FEATURES: [bool; N_FEATURES] =
    [true, true, false, true, true, false, false, false];

impl Default for FitOptions {
    fn default() -> Self {
        Self {
            l2: 0.01,
            iterations: 3000,
            learning_rate: 0.5,
            use_feature: PRODUCT_FEATURES,
        }
    }
}

fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

impl Logistic {
    /// Fits P(label) on `rows`. Needs at least one example of each label to mean anything; with one
    /// label only it returns that label's rate as a constant.
    pub fn fit(rows: &[[f64; N_FEATURES]], labels: &[bool], options: FitOptions) -> Self {
        assert_eq!(rows.len(), labels.len(), "one label per row");
        let n = rows.len().max(1) as f64;
        let mut mean = [0.0; N_FEATURES];
        let mut scale = [1.0; N_FEATURES];
        for j in 0..N_FEATURES {
            // Over the rows that know the feature; the others are read as this mean (see UNKNOWN).
            let known: Vec<f64> = rows
                .iter()
                .map(|r| r[j])
                .filter(|x| x.is_finite())
                .collect();
            let k = known.len().max(1) as f64;
            mean[j] = known.iter().sum::<f64>() / k;
            let var = known.iter().map(|x| (x - mean[j]).powi(2)).sum::<f64>() / k;
            // A constant feature stays at zero after centring; its scale only avoids dividing by 0.
            scale[j] = if var > 1e-12 { var.sqrt() } else { 1.0 };
        }
        let z: Vec<[f64; N_FEATURES]> = rows
            .iter()
            .map(|r| {
                let mut out = [0.0; N_FEATURES];
                for j in 0..N_FEATURES {
                    if options.use_feature[j] && r[j].is_finite() {
                        out[j] = (r[j] - mean[j]) / scale[j];
                    }
                }
                out
            })
            .collect();
        let rate = labels.iter().filter(|&&l| l).count() as f64 / n;
        let mut weights = [0.0; N_FEATURES];
        let mut bias = (rate.clamp(1e-3, 1.0 - 1e-3) / (1.0 - rate.clamp(1e-3, 1.0 - 1e-3))).ln();
        for _ in 0..options.iterations {
            let mut grad = [0.0; N_FEATURES];
            let mut grad_bias = 0.0;
            for (x, &y) in z.iter().zip(labels) {
                let p = sigmoid(bias + dot(&weights, x));
                let err = p - f64::from(u8::from(y));
                for j in 0..N_FEATURES {
                    grad[j] += err * x[j];
                }
                grad_bias += err;
            }
            for j in 0..N_FEATURES {
                weights[j] -= options.learning_rate * (grad[j] / n + options.l2 * weights[j]);
            }
            bias -= options.learning_rate * grad_bias / n;
        }
        Self {
            mean,
            scale,
            weights,
            bias,
        }
    }

    /// P(answerable) for one row of evidence.
    pub fn predict(&self, row: &[f64; N_FEATURES]) -> f64 {
        let mut z = self.bias;
        for (j, x) in row.iter().enumerate() {
            // An unknown feature (see `evidence::UNKNOWN`) sits at the mean: it adds nothing.
            if x.is_finite() {
                z += self.weights[j] * (x - self.mean[j]) / self.scale[j];
            }
        }
        sigmoid(z)
    }
}

/// The fitted model the product ships, with the threshold below which it offers a person.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ShippedModel {
    /// Where and how it was fitted, for whoever reads the file.
    pub fitted_on: String,
    pub features: Vec<String>,
    pub model: Logistic,
    pub threshold: f64,
}

impl ShippedModel {
    /// The model in `assistant/confidence-model.json`, written by `scanaid eval answerability
    /// --features all --embedding-model minilm --write-model assistant/confidence-model.json` (the
    /// bundled manuals' answerable and unanswerable questions, with the tuned MiniLM that ships).
    pub fn bundled() -> Self {
        serde_json::from_str(include_str!("../confidence-model.json"))
            .expect("assistant/confidence-model.json is valid (tested)")
    }

    /// The model fitted on the evidence of the embedding model `model_id` (an `Embedder::model_id`),
    /// or `None` when none was. Cosines do not carry over between embedding models:
    /// multilingual-e5's sit higher than MiniLM's, and MiniLM's model over e5's evidence escalated
    /// only 22% of the unanswerable questions (README, "Answer or escalate").
    /// `assistant/confidence-model-e5.json` is written by the same command with `--embedding-model
    /// e5`, and `confidence-model-minilm-base.json` (the model that shipped before the tuned MiniLM)
    /// with `--embedding-model minilm-base`.
    pub fn fitted_for(model_id: &str) -> Option<Self> {
        let tuned = format!(
            "{}+delta-{}",
            scanaid_models::MINILM_L6_V2.name,
            &scanaid_models::delta::MINILM_TUNED.sha256[..16]
        );
        if model_id == scanaid_models::MULTILINGUAL_E5_SMALL.name {
            Some(
                serde_json::from_str(include_str!("../confidence-model-e5.json"))
                    .expect("assistant/confidence-model-e5.json is valid (tested)"),
            )
        } else if model_id == scanaid_models::MINILM_L6_V2.name {
            Some(
                serde_json::from_str(include_str!("../confidence-model-minilm-base.json"))
                    .expect("assistant/confidence-model-minilm-base.json is valid (tested)"),
            )
        } else if model_id == tuned {
            Some(Self::bundled())
        } else {
            None
        }
    }

    /// `fitted_for`, or for a model no confidence model was fitted on (a research delta) the tuned
    /// MiniLM's, saying so in the returned flag: its thresholds then mean less, and callers tell
    /// their users.
    pub fn for_model(model_id: &str) -> (Self, bool) {
        match Self::fitted_for(model_id) {
            Some(model) => (model, true),
            None => (Self::bundled(), false),
        }
    }
}

fn dot(a: &[f64; N_FEATURES], b: &[f64; N_FEATURES]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bundled_models_load_and_weigh_only_the_features_they_name() {
        let fitted = |id: &str| ShippedModel::fitted_for(id).unwrap_or_else(|| panic!("{id}"));
        let tuned = fitted("all-MiniLM-L6-v2+delta-157b6d3e1475a092");
        let base = fitted("all-MiniLM-L6-v2");
        let e5 = fitted("multilingual-e5-small-q4");
        assert_eq!(tuned, ShippedModel::bundled());
        // Another delta (research) or a typo has no fitted model, and `for_model` says so.
        for unfitted in [
            "all-MiniLM-L6-v2+delta-0123456789abcdef",
            "multilingual-e5-small-q4+delta-0123456789abcdef",
            "all-minilm-l6-v2",
            "",
        ] {
            assert_eq!(ShippedModel::fitted_for(unfitted), None, "{unfitted:?}");
            assert_eq!(
                ShippedModel::for_model(unfitted),
                (ShippedModel::bundled(), false)
            );
        }
        assert!(ShippedModel::for_model("all-MiniLM-L6-v2").1);
        assert_ne!(tuned, base);
        assert_ne!(tuned, e5);
        assert_ne!(base, e5);
        for shipped in [tuned, base, e5] {
            assert!(shipped.threshold > 0.0 && shipped.threshold < 1.0);
            for (j, name) in crate::evidence::FEATURE_NAMES.iter().enumerate() {
                let named = shipped.features.iter().any(|f| f == name);
                assert_eq!(named, shipped.model.weights[j] != 0.0, "feature {name}");
            }
        }
    }

    fn row(first: f64, second: f64) -> [f64; N_FEATURES] {
        let mut r = [0.0; N_FEATURES];
        r[0] = first;
        r[1] = second;
        r
    }

    /// 200 rows whose label follows feature 0 (feature 1 is noise), and options using every feature.
    fn feature_0_decides() -> (Vec<[f64; N_FEATURES]>, Vec<bool>, FitOptions) {
        let rows: Vec<_> = (0..200)
            .map(|i| row((i % 20) as f64 / 20.0, ((i * 7) % 13) as f64))
            .collect();
        let labels: Vec<bool> = rows.iter().map(|r| r[0] >= 0.5).collect();
        let everything = FitOptions {
            use_feature: [true; N_FEATURES],
            ..FitOptions::default()
        };
        (rows, labels, everything)
    }

    #[test]
    fn learns_which_feature_separates_the_labels() {
        let (rows, labels, everything) = feature_0_decides();
        let model = Logistic::fit(&rows, &labels, everything);
        assert!(model.weights[0] > 1.0, "{model:?}");
        assert!(model.weights[1].abs() < model.weights[0] / 5.0, "{model:?}");
        assert!(model.predict(&row(0.95, 3.0)) > 0.9);
        assert!(model.predict(&row(0.05, 3.0)) < 0.1);
    }

    #[test]
    fn an_unknown_feature_is_read_as_the_average_in_fitting_and_predicting() {
        let (mut rows, labels, everything) = feature_0_decides();
        let known = Logistic::fit(&rows, &labels, everything);
        rows[3][1] = crate::evidence::UNKNOWN;
        let model = Logistic::fit(&rows, &labels, everything);
        assert!(model
            .mean
            .iter()
            .chain(&model.weights)
            .all(|x| x.is_finite()));
        assert!(
            (model.weights[0] - known.weights[0]).abs() < 0.1,
            "{model:?}"
        );
        let unknown = row(0.95, crate::evidence::UNKNOWN);
        assert_eq!(
            model.predict(&unknown),
            model.predict(&row(0.95, model.mean[1]))
        );
    }

    #[test]
    fn on_uninformative_evidence_it_predicts_the_base_rate() {
        // 3 of 4 answerable, features say nothing: a calibrated model says 0.75.
        let rows: Vec<_> = (0..400).map(|i| row((i % 2) as f64, 1.0)).collect();
        let labels: Vec<bool> = (0..400).map(|i| (i / 2) % 4 != 0).collect();
        let everything = FitOptions {
            use_feature: [true; N_FEATURES],
            ..FitOptions::default()
        };
        let model = Logistic::fit(&rows, &labels, everything);
        let p = model.predict(&row(0.0, 1.0));
        assert!((p - 0.75).abs() < 0.02, "{p}");
    }

    #[test]
    fn a_feature_left_out_gets_no_weight() {
        let rows: Vec<_> = (0..100).map(|i| row((i % 10) as f64, 0.0)).collect();
        let labels: Vec<bool> = rows.iter().map(|r| r[0] >= 5.0).collect();
        let mut options = FitOptions {
            use_feature: [true; N_FEATURES],
            ..FitOptions::default()
        };
        options.use_feature[0] = false;
        let model = Logistic::fit(&rows, &labels, options);
        assert_eq!(model.weights[0], 0.0);
    }
}
