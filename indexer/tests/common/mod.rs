//! Shared set-up of the indexer's integration tests: the real MiniLM embedder and small manuals.

use std::path::Path;
use std::sync::{Arc, OnceLock};

use scanaid_models::{ensure_model, BertEmbedder, Embedder, MINILM_L6_V2};

pub fn embedder() -> Arc<dyn Embedder> {
    static EMBEDDER: OnceLock<Arc<dyn Embedder>> = OnceLock::new();
    EMBEDDER
        .get_or_init(|| {
            let models = std::env::var_os("SCANAID_MODELS_DIR")
                .map(Into::into)
                .unwrap_or_else(scanaid_models::default_models_dir);
            let (dir, _) = ensure_model(&models, &MINILM_L6_V2).expect("model fetched");
            Arc::new(BertEmbedder::load(&dir, &MINILM_L6_V2).expect("model loads"))
        })
        .clone()
}

pub const PUMP: &str = r#"+++
id = "pump-service"
title = "VP-300 Infusion Pump Service Manual"
models = ["VP-300"]
audience = ["technician"]
revision = "B"
+++
# Fault codes

| Code | Meaning | Action |
|---|---|---|
| E-204 | Downstream occlusion | Check the line for kinks and clamps |
| E-310 | Battery depleted | Connect mains power and replace PN 4471-B |

# Replace the battery

1. Switch the pump off and disconnect mains power.
2. Remove the four screws of the battery door with a T10 driver.
3. Fit the new battery pack PN 4471-B and tighten the screws to 0.6 N·m.

# Operator quick start {audience=operator}

Load the administration set, close the door and press Start.
"#;

pub const COMPRESSOR: &str = r#"+++
id = "rsc-service"
title = "RSC-37 Rotary Screw Compressor Manual"
models = ["RSC-37"]
audience = ["technician"]
revision = "4"
+++
# Oil change

1. Stop the compressor and isolate it electrically.
2. Drain the oil sump into a container while the oil is warm.
3. Refill with 18 litres of compressor oil PN 2211-C.

# Air filter

Replace the intake air filter every 2,000 operating hours.
"#;

pub fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).unwrap();
}
