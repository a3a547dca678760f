//! `k3rs images`: import, list, remove and pull images in the node's image store. The data
//! dir follows the same rules as `k3rs server` (flag, `K3RS_DATA_DIR`, the config files,
//! the default), and the store is safe to use while the server runs.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};

use super::config::{self, ConfigLocation, Host, Key, Raw};
use super::{error_chain, hostname, EXIT_FAILURE, EXIT_USAGE};
use crate::images::{Image, ImageRef, ImageStore, PullOptions, RegistriesConfig};

/// The registries file `k3rs images pull` and the kubelet read unless told otherwise.
pub const DEFAULT_REGISTRIES_FILE: &str = crate::server::config::DEFAULT_PRIVATE_REGISTRY;

#[derive(Debug, Args)]
pub(super) struct ImagesArgs {
    /// Directory for all state [default: /var/lib/k3rs]
    #[arg(long, value_name = "DIR", global = true)]
    data_dir: Option<String>,

    /// Config file, read for data-dir as `k3rs server` reads it [default: /etc/k3rs/config.yaml]
    #[arg(long, value_name = "FILE", global = true)]
    config: Option<PathBuf>,

    #[command(subcommand)]
    command: ImagesCommand,
}

#[derive(Debug, Subcommand)]
enum ImagesCommand {
    /// Import OCI image-layout or `docker save` archives (.tar, .tar.gz)
    Import {
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
    },
    /// List images
    #[command(alias = "list")]
    Ls {
        /// Show only image IDs
        #[arg(short, long)]
        quiet: bool,
    },
    /// Remove images by name, ID or digest
    #[command(alias = "remove")]
    Rm {
        #[arg(required = true, value_name = "REF")]
        references: Vec<String>,
    },
    /// Pull an image from a registry
    Pull {
        #[arg(value_name = "REF")]
        reference: String,
        /// Registry mirrors and credentials (k3s' registries.yaml format)
        #[arg(long, value_name = "FILE", default_value = DEFAULT_REGISTRIES_FILE)]
        registries: PathBuf,
        /// Credentials as USER:PASSWORD for the image's registry
        #[arg(long, value_name = "USER:PASSWORD")]
        creds: Option<String>,
    },
}

pub(super) fn run(args: ImagesArgs) -> ExitCode {
    let data_dir = match data_dir(&args) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("k3rs: error: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    super::init_logging(false);
    match execute(args.command, data_dir) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("k3rs: error: {}", error_chain(&e));
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

/// The data dir as `k3rs server` would resolve it.
fn data_dir(args: &ImagesArgs) -> Result<crate::server::layout::DataDir, config::ConfigError> {
    let env = config::process_env();
    let location = ConfigLocation::choose(args.config.as_deref(), &env)?;
    let files = location.load()?;
    let host = Host { hostname: hostname(), cwd: std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/")) };
    let cli: Vec<(Key, Raw)> = args.data_dir.iter().map(|d| (Key::DataDir, Raw::Text(d.clone()))).collect();
    Ok(config::resolve(&files, &env, &cli, &host)?.config.data_dir)
}

fn execute(command: ImagesCommand, data_dir: crate::server::layout::DataDir) -> anyhow::Result<ExitCode> {
    let store = ImageStore::open(&data_dir.image_store()).context("cannot open the image store")?;
    match command {
        ImagesCommand::Import { files } => {
            for file in files {
                let started = std::time::Instant::now();
                let images = store.import_archive(&file)?;
                for image in images {
                    println!(
                        "imported {} ({}) in {:.2?}",
                        image.names.join(", "),
                        short_id(&image.id),
                        started.elapsed()
                    );
                }
            }
        }
        ImagesCommand::Ls { quiet } => {
            let images = store.list()?;
            if quiet {
                for i in &images {
                    println!("{}", i.id);
                }
            } else {
                print!("{}", table(&images));
            }
        }
        ImagesCommand::Rm { references } => {
            let mut failed = false;
            for r in references {
                match store.remove(&r) {
                    Ok(image) => println!("Deleted: {}", image.names.first().cloned().unwrap_or(image.id)),
                    Err(e) => {
                        eprintln!("k3rs: error: {e}");
                        failed = true;
                    }
                }
            }
            if failed {
                return Ok(ExitCode::from(EXIT_FAILURE));
            }
        }
        ImagesCommand::Pull { reference, registries, creds } => {
            let registries = RegistriesConfig::load(&registries)?;
            let mut opts = PullOptions { registries, credentials: Vec::new() };
            if let Some(creds) = creds {
                let (username, password) = creds.split_once(':').context("--creds must be USER:PASSWORD")?;
                let registry = ImageRef::parse(&reference)?.registry;
                opts.credentials.push(crate::images::Credential {
                    registry,
                    username: username.into(),
                    password: password.into(),
                });
            }
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("cannot start the async runtime")?;
            let image = runtime.block_on(store.pull(&reference, &opts))?;
            println!("Image is up to date for {}", image.id);
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn short_id(id: &str) -> &str {
    let hex = crate::images::digest::hex_part(id);
    &hex[..hex.len().min(13)]
}

/// `crictl images` columns: IMAGE TAG IMAGE ID SIZE, one row per name.
fn table(images: &[Image]) -> String {
    let mut rows: Vec<[String; 4]> = vec![["IMAGE".into(), "TAG".into(), "IMAGE ID".into(), "SIZE".into()]];
    for image in images {
        let size = human_size(image.size);
        if image.names.is_empty() {
            rows.push(["<none>".into(), "<none>".into(), short_id(&image.id).into(), size.clone()]);
        }
        for name in &image.names {
            let (repo, tag) = match ImageRef::parse(name) {
                Ok(r) => (r.name(), r.tag.unwrap_or_else(|| "<none>".into())),
                Err(_) => (name.clone(), "<none>".into()),
            };
            rows.push([repo, tag, short_id(&image.id).into(), size.clone()]);
        }
    }
    let widths: Vec<usize> = (0..4).map(|c| rows.iter().map(|r| r[c].len()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for row in rows {
        let line = format!(
            "{:w0$}   {:w1$}   {:w2$}   {}",
            row[0],
            row[1],
            row[2],
            row[3],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2]
        );
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// Sizes as crictl prints them: 4.27MB (powers of 1000).
fn human_size(bytes: u64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1000.0 && u < units.len() - 1 {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes}B")
    } else {
        format!("{v:.3}").trim_end_matches('0').trim_end_matches('.').to_string() + units[u]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_table() {
        assert_eq!(human_size(999), "999B");
        assert_eq!(human_size(1_982_256), "1.982MB");
        assert_eq!(human_size(2_000_000), "2MB");
        let image = Image {
            id: format!("sha256:{}", "ab".repeat(32)),
            names: vec!["docker.io/library/busybox:latest".into()],
            repo_digests: vec![],
            size: 1_000,
            config: Default::default(),
            layers: vec![],
            manifest_digest: String::new(),
            layer_digests: vec![],
            extra_blobs: vec![],
        };
        let t = table(&[image]);
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].starts_with("IMAGE"), "{t}");
        assert!(lines[0].contains("TAG") && lines[0].contains("IMAGE ID") && lines[0].contains("SIZE"));
        assert_eq!(
            lines[1].split_whitespace().collect::<Vec<_>>(),
            ["docker.io/library/busybox", "latest", "ababababababa", "1kB"]
        );
    }
}
