//! Named certificates: `evergreen certificate create|set|label|rotate|list`.
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;
use evergreen_api::files;
use evergreen_api::{
    Kind, LabelRequest, NamedCertificateSpec, NamedCertificateStatus, NamedDeletion, Replacement,
    RotateRequest, Scope, SecretRef, TypeRequest, UpdateCert, Usage,
};
use serde_json::json;

use crate::connection::{AdminConnection, Connection};
use crate::output::{self, Format};

/// Declare a named certificate that nodes install: one certificate for every node
/// (cluster scope, as Redis Enterprise's proxy or syncer), or one per node with its key
/// made on the node (node scope, as a kubelet serving certificate).
///
/// In node scope, {node} is the node's enrolled name and {ip} an address allowed with
/// `evergreen node allow` (else the one the node connects from); a node never gets a name
/// of the server, localhost, a loopback address or a wildcard.
///
/// Types: selfsigned (issued by the cluster CA; a new --label regenerates it), provided
/// (uploaded with `certificate set`), secret (read from a directory the server watches).
/// Internal certificates may only be selfsigned.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  evergreen certificate create proxy --san proxy.example.com --san 10.0.0.10
  evergreen certificate create syncer --type provided --usage peer
  evergreen certificate create kubelet --scope node --san '{node}.nodes.example.com' --san '{ip}' \\
      --allow-dns-suffix nodes.example.com --allow-cidr 10.0.0.0/8
  evergreen certificate create ui --type secret --secret-dir /etc/ui-tls --secret-files tls.crt,tls.key,ca.crt")]
pub struct CreateArgs {
    /// Lowercase letters, digits and '-'.
    pub name: String,
    #[arg(long, default_value = "cluster", value_parser = words(Scope::ALL.iter().map(|w| w.as_str())))]
    pub scope: String,
    #[arg(long = "type", default_value = "selfsigned", value_parser = words(Kind::ALL.iter().map(|w| w.as_str())))]
    pub kind: String,
    /// DNS name or IP; repeatable. Node scope may use {node} and {ip}.
    #[arg(long, value_name = "NAME")]
    pub san: Vec<String>,
    #[arg(long, default_value = "server", value_parser = words(Usage::ALL.iter().map(|w| w.as_str())))]
    pub usage: String,
    /// Internal: only selfsigned allowed.
    #[arg(long)]
    pub internal: bool,
    /// Which nodes install it: all, or NODE,NODE,…
    #[arg(long, default_value = "all", value_name = "all|NODE,…")]
    pub nodes: String,
    #[arg(long, default_value = "")]
    pub label: String,
    /// For --type secret: the directory holding the certificate, key and CA files.
    #[arg(long, value_name = "DIR")]
    pub secret_dir: Option<PathBuf>,
    /// For --type secret: the file names in it (certificate,key,CA).
    #[arg(long, value_name = "CERT,KEY,CA", default_value = "cert,key,cacert")]
    pub secret_files: String,
    /// Every DNS name of the certificate must be this name or end with .SUFFIX;
    /// repeatable. Checked at every issuance, node-scope names included.
    #[arg(long, value_name = "SUFFIX")]
    pub allow_dns_suffix: Vec<String>,
    /// Every IP address of the certificate must lie in this range (10.0.0.0/8);
    /// repeatable.
    #[arg(long, value_name = "CIDR")]
    pub allow_cidr: Vec<String>,
    #[command(flatten)]
    pub connection: Connection,
}

/// Replace a named certificate with one you provide, on every node that uses it (as
/// `rladmin cluster certificate set` or `PUT /v1/cluster/update_cert`). Says whether clients
/// must update their trust: not when the new certificate has the same issuing CA.
///
/// The name `server` sets the API listener's certificate (Redis Enterprise's `api` and
/// `cm`): one of your company's CA, which must name the server's host name and every
/// --san it was started with. It is served from the next handshake to browsers, curl and
/// anything else; Evergreen's agents and CLI keep the cluster's serving certificate.
/// `evergreen certificate set-type server selfsigned` goes back to the cluster's.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  evergreen certificate set proxy --cert proxy.pem --key proxy-key.pem
  evergreen certificate set proxy --cert combined.pem     # certificate and key in one file
  evergreen certificate set server --cert api.pem --key api-key.pem   # the API listener")]
pub struct SetArgs {
    pub name: String,
    /// The certificate (PEM, chain allowed).
    #[arg(long, value_name = "FILE")]
    pub cert: PathBuf,
    /// Its key. Default: the key in the --cert file.
    #[arg(long, value_name = "FILE")]
    pub key: Option<PathBuf>,
    #[command(flatten)]
    pub connection: AdminConnection,
}

/// Switch a named certificate to another type: selfsigned (a new version is issued now),
/// provided (the current version stays until you set one), or secret (the directory is
/// read now, and watched).
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  evergreen certificate set-type external selfsigned        # back from a provided certificate
  evergreen certificate set-type external provided          # then: evergreen certificate set external --cert …
  evergreen certificate set-type ui secret --secret-dir /etc/ui-tls --secret-files tls.crt,tls.key,ca.crt")]
pub struct SetTypeArgs {
    pub name: String,
    #[arg(value_name = "TYPE", value_parser = words(Kind::ALL.iter().map(|w| w.as_str())))]
    pub kind: String,
    /// For secret: the directory holding the certificate, key and CA files (default: the
    /// one it had).
    #[arg(long, value_name = "DIR")]
    pub secret_dir: Option<PathBuf>,
    /// For secret: the file names in it (certificate,key,CA).
    #[arg(long, value_name = "CERT,KEY,CA", default_value = "cert,key,cacert")]
    pub secret_files: String,
    #[command(flatten)]
    pub connection: Connection,
}

/// Delete a named certificate. Nodes remove the files they installed for it at their next
/// watch, and what this cluster issued for it that is still valid is revoked (cessation of
/// operation). The server's own `server` and `admin` cannot be deleted.
#[derive(Debug, Args)]
#[command(after_help = "Example:
  evergreen certificate delete syncer")]
pub struct DeleteArgs {
    pub name: String,
    #[command(flatten)]
    pub connection: Connection,
}

/// Set a label. A new, different label regenerates a selfsigned certificate (Event
/// Streams' way to ask for a new one) and re-reads a secret; the same label changes
/// nothing.
#[derive(Debug, Args)]
#[command(after_help = "Example:
  evergreen certificate label external upgraded-2")]
pub struct LabelArgs {
    pub name: String,
    /// Letters, digits, '-', '_' and '.', at most 63.
    pub label: String,
    #[command(flatten)]
    pub connection: Connection,
}

/// Issue new keys and certificates now, with no restart: selfsigned named certificates
/// (installed on every node by its agent) and the server's own `server` (serving) and
/// `admin` certificates. Without --service, all of them.
///
/// Previous versions stay in the datastore and the inventory, and stay valid until they
/// expire. CA certificates and service-account keys are never touched: rotate those with
/// `evergreen certificate rotate-ca` and `evergreen keys rotate service-account`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  evergreen certificate rotate
  evergreen certificate rotate --service proxy,kubelet
  evergreen certificate rotate --service server        # the serving certificate only")]
pub struct RotateArgs {
    /// Names to rotate, comma-separated.
    #[arg(long, value_name = "NAME[,NAME…]", value_delimiter = ',')]
    pub service: Vec<String>,
    #[command(flatten)]
    pub connection: Connection,
}

/// List named certificates with type, label, version, expiry, and which nodes have
/// installed which version.
#[derive(Debug, Args)]
pub struct ListArgs {
    #[arg(short = 'o', long = "output", value_enum, default_value_t = Format::Table)]
    pub output: Format,
    #[command(flatten)]
    pub connection: Connection,
}

fn say(answer: &Replacement) {
    println!(
        "{}: version {}{}{}\n  {}",
        answer.name,
        answer.version,
        answer
            .fingerprint
            .as_ref()
            .map(|f| format!(", sha256 {f}"))
            .unwrap_or_default(),
        answer
            .not_after
            .as_ref()
            .map(|t| format!(", expires {t}"))
            .unwrap_or_default(),
        answer.trust
    );
}

/// The secret directory of `--secret-dir DIR --secret-files CERT,KEY,CA`.
fn secret_ref(dir: &std::path::Path, files: &str) -> Result<SecretRef> {
    let names: Vec<&str> = files.split(',').collect();
    let [cert, key, cacert] = names[..] else {
        bail!("--secret-files takes three names: certificate,key,CA");
    };
    let dir =
        std::fs::canonicalize(dir).with_context(|| format!("cannot read {}", dir.display()))?;
    Ok(SecretRef {
        path: dir.display().to_string(),
        cert: cert.into(),
        key: key.into(),
        cacert: cacert.into(),
    })
}

/// The words of an API type as clap's possible values (shown in --help).
fn words(all: impl IntoIterator<Item = &'static str>) -> clap::builder::PossibleValuesParser {
    clap::builder::PossibleValuesParser::new(all)
}

/// A word clap has already checked, as its API type.
fn word<T: std::str::FromStr<Err = String>>(text: &str) -> Result<T> {
    text.parse().map_err(anyhow::Error::msg)
}

pub fn create(args: CreateArgs) -> Result<()> {
    let kind: Kind = word(&args.kind)?;
    let secret = match (kind, &args.secret_dir) {
        (Kind::Secret, None) => bail!("--type secret needs --secret-dir DIR"),
        (Kind::Secret, Some(dir)) => Some(secret_ref(dir, &args.secret_files)?),
        _ => None,
    };
    let spec = NamedCertificateSpec {
        name: args.name,
        scope: word(&args.scope)?,
        kind,
        label: args.label,
        internal: args.internal,
        usage: word(&args.usage)?,
        sans: args.san,
        nodes: match args.nodes.as_str() {
            "all" => Vec::new(),
            list => list.split(',').map(str::to_owned).collect(),
        },
        secret,
        allowed_dns: args.allow_dns_suffix,
        allowed_cidrs: args.allow_cidr,
    };
    let client = args.connection.client()?;
    let answer: Replacement =
        crate::runtime()?.block_on(client.json("POST", "/v1/cluster/certificates", Some(&spec)))?;
    say(&answer);
    Ok(())
}

pub fn set(args: SetArgs) -> Result<()> {
    let certificate = String::from_utf8(files::read_input(&args.cert)?)
        .context("the certificate file is not text")?;
    let key = match &args.key {
        Some(path) => {
            String::from_utf8(files::read_input(path)?).context("the key file is not text")?
        }
        None if certificate.contains("PRIVATE KEY-----") => certificate.clone(),
        None => bail!(
            "{} holds no private key; pass --key FILE",
            args.cert.display()
        ),
    };
    let client = args.connection.client()?;
    let body = UpdateCert {
        name: args.name,
        key,
        certificate,
    };
    let answer: Replacement =
        crate::runtime()?.block_on(client.json("PUT", "/v1/cluster/update_cert", Some(&body)))?;
    say(&answer);
    Ok(())
}

pub fn set_type(args: SetTypeArgs) -> Result<()> {
    let secret = match &args.secret_dir {
        Some(dir) if args.kind == "secret" => Some(secret_ref(dir, &args.secret_files)?),
        Some(_) => bail!("--secret-dir is for --type secret"),
        None => None,
    };
    let client = args.connection.client()?;
    let body = TypeRequest {
        kind: word(&args.kind)?,
        secret,
    };
    let path = format!("/v1/cluster/certificates/{}/type", args.name);
    let answer: Replacement = crate::runtime()?.block_on(client.json("PUT", &path, Some(&body)))?;
    say(&answer);
    Ok(())
}

pub fn delete(args: DeleteArgs) -> Result<()> {
    let client = args.connection.client()?;
    let path = format!("/v1/cluster/certificates/{}", args.name);
    let answer: NamedDeletion =
        crate::runtime()?.block_on(client.json::<(), _>("DELETE", &path, None))?;
    println!(
        "Deleted {}; nodes remove its files at their next watch{}",
        answer.name,
        if answer.revoked.is_empty() {
            String::new()
        } else {
            format!(
                "; revoked what was issued for it: {}",
                answer.revoked.join(", ")
            )
        }
    );
    Ok(())
}

pub fn label(args: LabelArgs) -> Result<()> {
    let client = args.connection.client()?;
    let body = LabelRequest { label: args.label };
    let path = format!("/v1/cluster/certificates/{}/label", args.name);
    let answer: Replacement = crate::runtime()?.block_on(client.json("PUT", &path, Some(&body)))?;
    say(&answer);
    Ok(())
}

pub fn rotate(args: RotateArgs) -> Result<()> {
    let client = args.connection.client()?;
    let body = RotateRequest {
        names: args.service,
    };
    let answers: Vec<Replacement> = crate::runtime()?.block_on(client.json(
        "POST",
        "/v1/cluster/certificates/rotate",
        Some(&body),
    ))?;
    if answers.is_empty() {
        println!("no selfsigned named certificates to rotate");
    }
    answers.iter().for_each(say);
    Ok(())
}

pub fn list(args: ListArgs) -> Result<()> {
    let client = args.connection.client()?;
    let all: Vec<NamedCertificateStatus> =
        crate::runtime()?.block_on(client.get_json("/v1/cluster/certificates"))?;
    let rows: Vec<serde_json::Value> = all
        .iter()
        .map(|c| {
            // node@vN, and whether the node saw its service serve that version.
            let acked: Vec<String> = c
                .acknowledged
                .iter()
                .map(|a| {
                    let served = match a.served {
                        Some(true) => " served",
                        Some(false) => " NOT SERVED",
                        None => "",
                    };
                    format!("{}@v{}{served}", a.node, a.version)
                })
                .collect();
            json!({
                "name": c.name, "scope": c.scope, "type": c.kind, "label": c.label, "internal": c.internal,
                "usage": c.usage, "sans": c.sans, "version": c.version, "fingerprint": c.fingerprint,
                "expires": c.not_after, "nodes": if c.nodes.is_empty() { vec!["all".to_owned()] } else { c.nodes.clone() },
                "acknowledged": acked,
            })
        })
        .collect();
    let columns = [
        ("NAME", "name"),
        ("SCOPE", "scope"),
        ("TYPE", "type"),
        ("LABEL", "label"),
        ("VERSION", "version"),
        ("EXPIRES", "expires"),
        ("INSTALLED", "acknowledged"),
    ];
    print!("{}", output::render(args.output, &columns, &rows));
    Ok(())
}
