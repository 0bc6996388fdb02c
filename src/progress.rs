//! Progress bars for long steps (model download, embedding), drawn on stderr.

use indicatif::{ProgressBar, ProgressStyle};

/// A progress callback for embedding `total` chunks; the bar appears on the first call.
pub fn embedding_bar(label: &'static str) -> impl FnMut(usize, usize) {
    let mut bar: Option<ProgressBar> = None;
    move |done, total| {
        if total == 0 {
            return;
        }
        let bar = bar.get_or_insert_with(|| {
            let b = ProgressBar::new(total as u64);
            b.set_style(
                ProgressStyle::with_template(
                    "{msg:>12} [{bar:40}] {pos}/{len} chunks  {per_sec}  eta {eta}",
                )
                .expect("valid template")
                .progress_chars("=> "),
            );
            b.set_message(label);
            b
        });
        bar.set_position(done as u64);
        if done >= total {
            bar.finish();
        }
    }
}

/// A spinner for a step of unknown length.
pub fn spinner(message: &str) -> ProgressBar {
    let b = ProgressBar::new_spinner();
    b.set_message(message.to_string());
    b.enable_steady_tick(std::time::Duration::from_millis(120));
    b
}
